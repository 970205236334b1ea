// Package sync serves the streams of /sync (spec: Client-Server API,
// "Syncing") and the long-poll that waits for them, for /sync itself and
// for simplified sliding sync (MSC4186).
//
// Each stream lives in its own file behind one small interface, Stream:
// its newest position, and "fill a response with what this user has in the
// stream between two positions". The streams are, in the order a response
// is built:
//
//	stream_rooms.go        joined, invited and left rooms: timeline, state, summary
//	stream_typing.go       m.typing per joined room (ephemeral state)
//	stream_receipts.go     m.receipt per joined room
//	stream_unread.go       unread_notifications per joined room (push)
//	stream_accountdata.go  global and room account data
//	stream_todevice.go     to-device messages, and their acknowledgement
//	stream_devicelists.go  device_lists and the one-time/fallback key counts
//	stream_presence.go     m.presence of users sharing a room
//
// A since token (token.go) holds one position per stream. Stored streams
// count on the storage's one position sequence; typing and presence have
// serials of their own. A stream reads from its own position to its newest
// and reports the position it reached, so adding a stream is one file and
// one line in New.
//
// Wake-ups: a Notifier (notifier.go) hears of every commit with the keys it
// touched (storage/notify.go) and wakes the long-polls that wait on them.
// The local notifier wakes on a committed-through watermark
// (watermark.go), the position below which every position is committed,
// so that a reader never skips a position that commits late; a cluster
// swaps in a notifier that carries the same across processes. Typing and
// presence are one Ephemeral interface (ephemeral.go) with an in-memory
// implementation, and time comes from internal/clock.
//
// What the streams need of the rest of the homeserver (storage reads,
// history visibility, event formatting, gaps, sticky events, push rules)
// are small interfaces defined here (deps.go); the homeserver wires them.
// This package must not import the homeserver package, nor federation,
// client API handlers, sfu, media or signalling.
package sync
