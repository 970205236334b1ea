// Package rooms owns the rules of a Matrix room's timeline: the one path
// that appends an event to a room, whether this server's users sent it or
// another server did. It builds and signs local events, checks remote
// ones against the auth rules, soft-fails what the current state refuses,
// applies redactions, keeps the state snapshots and the forward
// extremities, and reads power levels. It also owns the one loader that
// turns a stored row into a PDU (Loader, Parse).
//
// rooms speaks Go, not HTTP: it imports no echo and no net/http, and not
// the homeserver package. What it needs of its caller comes in Config as
// plain values (server name, signing key and key ID, a clock, a logger, a
// JSON check, a hook run after each append). Refusals are the typed errors
// of errors.go (ErrForbidden, ErrNotFound, ErrUnsupportedVersion,
// ErrBadEvent, ErrTooLarge, ErrMissingParam, ErrRejected), wrapped with
// detail; the homeserver's HTTP edge turns them into Matrix errcodes in
// one place (homeserver/errors.go).
//
// Spec: Server-Server API, "Checks performed on receipt of a PDU". The
// steps, and where each lives:
//
//  1. Format: a valid event, at most 65,536 bytes of canonical JSON —
//     homeserver/federation_pdu.go checkArrived (transport side, until
//     federation moves out of the homeserver package).
//  2. Signatures of the sending servers — homeserver/federation_pdu.go
//     parsePDU (it fetches keys: transport).
//  3. Content hash (else the event is kept redacted, or refused when
//     pushed by its origin) — homeserver/federation_pdu.go parsePDU.
//  4. Auth against the event's own auth events, which must be known and
//     not rejected — auth.go Writer.AllowedByOwnAuth (also Loader).
//  5. Auth against the state before the event, computed from its prev
//     events (resolved when they fork) — remote.go Writer.AppendRemote,
//     resolve.go Loader.Resolve, auth.go Loader.AuthAgainst. A failure at
//     4 or 5 rejects the event (ErrRejected; the caller records it).
//  6. Soft failure: auth against the room's current state — softfail.go
//     Writer.softFailed; a soft-failed event is stored as an outlier
//     outside the timeline.
//
// Local events take the same path from the other side: local.go builds
// the event on the room's frontier, picks its auth events from the
// current state, signs it and checks it (step 5 with the current state as
// the state before); store.go is the code both kinds share once an event
// is allowed (the row, unsigned prev_content, the state snapshot, the
// extremities, the caller's hook), and redact.go applies redactions by
// one rule for both. power.go reads power levels for both.
package rooms
