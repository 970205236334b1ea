package sync

import (
	"context"
	"encoding/json"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Stream is one /sync stream (Dendrite's syncapi/streams is the model).
type Stream interface {
	// ID names the stream's slot in the since token.
	ID() StreamID
	// Latest returns the newest position a response may cover. committed
	// is the notifier's committed-through position when the request
	// started listening: the storage streams answer it; typing and
	// presence answer their own serials.
	Latest(ctx context.Context, committed int64) int64
	// Fill adds to req.Response what req's user has in the stream after
	// from up to to (from is the since token's position, 0 for an initial
	// sync). It returns the position the response covered (to, or less
	// when the stream stopped early) and whether it added anything new.
	Fill(ctx context.Context, req *Request, from, to int64) (next int64, news bool, err error)
}

// Request is one /sync call: its parameters, what the streams share while
// building the response, and the response.
type Request struct {
	UserID, DeviceID string
	Filter           Filter
	FullState        bool
	// Since is the since token; nil for an initial sync.
	Since *Token
	// NowMS is the time of the response (unsigned.age).
	NowMS int64

	// Memberships are the user's rooms, read before listening.
	Memberships []storage.RoomMembership
	// Response is what the streams fill.
	Response *Response
	// rooms are the joined rooms the rooms stream looked at, in
	// membership order: the ephemeral and unread streams add to them.
	rooms []roomSection
}

// Initial reports whether this is an initial sync (no since token).
func (r *Request) Initial() bool { return r.Since == nil }

// roomSection is a joined room as the rooms stream left it.
type roomSection struct {
	id string
	jr *JoinedRoom
	// fresh: the whole room is sent (initial sync, new membership,
	// full_state).
	fresh bool
	// has: the room carries something new.
	has bool
}

// include puts a joined room into the response.
func (r *Request) include(roomID string, jr *JoinedRoom) {
	r.Response.Rooms.Join[roomID] = jr
}

// Response is a /sync response body (spec: "GET /sync").
type Response struct {
	NextBatch   string         `json:"next_batch"`
	Rooms       Rooms          `json:"rooms"`
	AccountData EventList      `json:"account_data"`
	Presence    EventList      `json:"presence"`
	ToDevice    EventList      `json:"to_device"`
	DeviceLists *DeviceLists   `json:"device_lists,omitempty"`
	OTKCounts   map[string]int `json:"device_one_time_keys_count"`
	Fallback    []string       `json:"device_unused_fallback_key_types"`
}

// NewResponse returns an empty response with every list present.
func NewResponse() *Response {
	return &Response{
		Rooms:       Rooms{Join: map[string]*JoinedRoom{}, Invite: map[string]*InvitedRoom{}, Leave: map[string]*LeftRoom{}},
		AccountData: EventList{Events: []any{}},
		Presence:    EventList{Events: []any{}},
		ToDevice:    EventList{Events: []any{}},
		OTKCounts:   map[string]int{},
		Fallback:    []string{},
	}
}

// EventList is {"events": [...]}.
type EventList struct {
	Events []any `json:"events"`
}

// DeviceLists is device_lists (spec: "Tracking the device list for a
// user").
type DeviceLists struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

// Rooms is the rooms section.
type Rooms struct {
	Join   map[string]*JoinedRoom  `json:"join"`
	Invite map[string]*InvitedRoom `json:"invite"`
	Leave  map[string]*LeftRoom    `json:"leave"`
}

// Timeline is a room's timeline section.
type Timeline struct {
	Events    []any  `json:"events"`
	Limited   bool   `json:"limited"`
	PrevBatch string `json:"prev_batch,omitempty"`
}

// JoinedRoom is one joined room.
type JoinedRoom struct {
	Timeline            Timeline       `json:"timeline"`
	State               EventList      `json:"state"`
	Ephemeral           EventList      `json:"ephemeral"`
	AccountData         EventList      `json:"account_data"`
	Summary             map[string]any `json:"summary"`
	UnreadNotifications map[string]int `json:"unread_notifications"`
	// Sticky is MSC4354's section.
	Sticky *EventList `json:"msc4354_sticky,omitempty"`
}

// NewJoinedRoom returns an empty joined room with every list present.
func NewJoinedRoom() *JoinedRoom {
	return &JoinedRoom{
		Timeline:            Timeline{Events: []any{}},
		State:               EventList{Events: []any{}},
		Ephemeral:           EventList{Events: []any{}},
		AccountData:         EventList{Events: []any{}},
		Summary:             map[string]any{},
		UnreadNotifications: map[string]int{"notification_count": 0, "highlight_count": 0},
	}
}

// InvitedRoom is one room the user is invited to.
type InvitedRoom struct {
	InviteState struct {
		Events []StrippedEvent `json:"events"`
	} `json:"invite_state"`
}

// StrippedEvent is a stripped state event (spec: "Stripped state").
type StrippedEvent struct {
	Content  json.RawMessage `json:"content"`
	Sender   string          `json:"sender"`
	StateKey string          `json:"state_key"`
	Type     string          `json:"type"`
}

// LeftRoom is one room the user left (or was banned from).
type LeftRoom struct {
	Timeline    Timeline  `json:"timeline"`
	State       EventList `json:"state"`
	AccountData EventList `json:"account_data"`
}
