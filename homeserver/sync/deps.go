package sync

import (
	"context"
	"encoding/json"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// What the streams need of the rest of the homeserver, each as small as
// the stream that uses it. *storage.DB provides the storage reads; the
// homeserver provides the rest.

// MembershipStore lists a user's rooms (the long-poll's wake-up keys).
type MembershipStore interface {
	Memberships(ctx context.Context, userID string) ([]storage.RoomMembership, error)
}

// Visibility filters events by history visibility (spec: Client-Server
// API, "History visibility"). joinedSince is the position of the user's
// current join (0: none): everything after it is theirs without a check.
type Visibility interface {
	Visible(ctx context.Context, roomID, userID string, joinedSince int64, evs []storage.Event) ([]storage.Event, error)
}

// Formatter turns stored events into the client format (spec:
// Client-Server API, "Room Event Format"), with unsigned.age at nowMS and
// the transaction ID for the device that sent them.
type Formatter interface {
	ClientEvents(evs []storage.Event, userID, deviceID string, nowMS int64) []any
}

// Gaps cuts a timeline at the newest gap in it (a stretch of history this
// server does not hold yet): evs after the gap, and whether it cut.
type Gaps interface {
	CutAtGap(ctx context.Context, roomID string, evs []storage.Event, after int64) ([]storage.Event, bool, error)
}

// Sticky returns a room's sticky events (MSC4354) between after and upto
// that the timeline tl does not already carry, formatted.
type Sticky interface {
	StickyEvents(ctx context.Context, roomID, userID, deviceID string, after, upto, nowMS int64, tl []storage.Event) ([]any, error)
}

// PushRules returns a user's push rules as account data content, the
// defaults if they never changed one.
type PushRules interface {
	PushRulesContent(ctx context.Context, userID string) (json.RawMessage, error)
}

// PresenceScanner returns the presence serial for a response, after
// announcing (to rooms and other servers) the presence changes a scan of
// Ephemeral found.
type PresenceScanner interface {
	ScanPresence(ctx context.Context) int64
}

// Store is every storage read of the streams together; *storage.DB is
// one.
type Store interface {
	MembershipStore
	RoomStore
	ReceiptStore
	UnreadStore
	AccountDataStore
	ToDeviceStore
	DeviceListStore
	PresenceStore
}
