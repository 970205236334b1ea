// Package rooms owns the rules of a Matrix room's timeline: the one path
// that appends an event to a room, whether this server's users sent it or
// another server did. It builds and signs local events, checks remote
// ones against the auth rules, soft-fails what the current state refuses,
// applies redactions, keeps the state snapshots and the forward
// extremities, and reads power levels. It also owns the one loader that
// turns a stored row into a PDU (Loader, Parse).
//
// rooms speaks Go, not HTTP: it imports no echo and no net/http, and not
// the homeserver package (the root imports_test.go holds it to that). What it
// needs of its caller comes as plain values: Config (server name, signing
// key and key ID, a clock, a JSON check, a hook run inside the write after
// each append) and a logger, both given to New. Refusals are the typed errors
// of errors.go (ErrForbidden, ErrNotFound, ErrUnsupportedVersion,
// ErrBadEvent, ErrTooLarge, ErrMissingParam, ErrRejected), wrapped with
// detail; the homeserver's HTTP edge turns them into Matrix errcodes in
// one place (homeserver/errors.go).
//
// Spec: Server-Server API, "Checks performed on receipt of a PDU". The
// steps, and where each lives:
//
//  1. Format: at most 65,536 bytes of canonical JSON that every parser
//     reads the same, a valid event of the room's version —
//     receive.go Rooms.CheckFormat, Rooms.CheckReceived.
//  2. Signatures of the sending servers — receive.go Rooms.CheckReceived
//     (the key fetching behind its JSONVerifier is the federation's).
//  3. Content hash: a pushed event that fails it is refused, a pulled one
//     kept redacted — receive.go Rooms.CheckReceived.
//  4. Auth against the event's own auth events, which must be known and
//     not rejected — auth.go Loader.AllowedByOwnAuth (Loader.StoreOutliers
//     for fetched events).
//  5. Auth against the state before the event, computed from its prev
//     events (resolved when they fork) — remote.go Writer.AppendRemote,
//     resolve.go Loader.Resolve, auth.go Loader.AuthAgainst. A failure at
//     4 or 5 rejects the event (ErrRejected; the caller records it).
//  6. Soft failure: auth against the room's current state — softfail.go
//     Writer.softFailed; a soft-failed event is stored as an outlier
//     outside the timeline.
//
// The federation code (still in package homeserver) fetches: it asks for
// missing prev events, the state at them and history, and hands each PDU
// to these steps. Events known only from another server's answer are
// stored by outofband.go (the send_join state, invites to rooms we are
// not in).
//
// Local events take the same path from the other side: local.go builds
// the event on the room's frontier, picks its auth events from the
// current state, signs it and checks it (step 5 with the current state as
// the state before); store.go is the code both kinds share once an event
// is allowed (the row, unsigned prev_content, the state snapshot, the
// extremities, the caller's hook), and redact.go applies redactions by
// one rule for both. power.go reads power levels for both.
package rooms
