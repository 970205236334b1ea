// Package federation is the homeserver's server-server API (spec:
// Server-Server API). It owns:
//   - transport: request signing (X-Matrix), server name resolution
//     (resolve.go: well-known, SRV, ports), the outbound address policy and
//     TLS (transport.go);
//   - server keys: publishing ours, fetching, checking and storing others'
//     (keys.go);
//   - the durable outbound queue, one sender per destination behind a
//     SenderLease, backoff on the Clock (queue.go);
//   - inbound /send and the receipt of PDUs and EDUs (send.go, pdu.go,
//     edu.go), handing each PDU to homeserver/rooms for the checks of the
//     spec's "Checks performed on receipt of a PDU";
//   - joins, leaves and invites, both ways (join.go, invite.go);
//   - backfill, state and event fetches, get_missing_events and timeline
//     gap filling (fetch.go, gaps.go, serve.go);
//   - directory, profile, key and OpenID queries (queries.go, serve.go)
//     and the federation listener's routes (federation.go).
//
// What it needs of the rest of the homeserver is handed to New in Config:
// storage (*storage.DB), rooms (*rooms.Rooms), a clock, a logger, and the
// interfaces it defines itself: Local (profiles, visibility, aliases, the
// room directory, OpenID, in-process services), Ephemeral (typing and
// presence), Positions (stream positions), SenderLease, HTTPHooks and
// JSONChecks. Client-side callers use its exported methods through small
// interfaces of their own.
//
// It never imports the homeserver package, homeserver/sync, sfu, media or
// signalling (imports_test.go at the module root checks it).
package federation
