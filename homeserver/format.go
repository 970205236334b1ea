package homeserver

import (
	"encoding/json"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// clientEvent is an event in the client-server API's format (spec:
// Client-Server API, "Room Event Format").
type clientEvent struct {
	Content        json.RawMessage `json:"content"`
	EventID        string          `json:"event_id"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         string          `json:"room_id,omitempty"`
	Sender         string          `json:"sender"`
	StateKey       *string         `json:"state_key,omitempty"`
	Type           string          `json:"type"`
	Redacts        string          `json:"redacts,omitempty"`
	Unsigned       map[string]any  `json:"unsigned,omitempty"`
	// Sticky is MSC4354's top-level msc4354_sticky (rtc_sticky.go).
	Sticky *stickyInfo `json:"msc4354_sticky,omitempty"`
}

// pduFields are the parts of a stored PDU that clients see.
type pduFields struct {
	Content json.RawMessage `json:"content"`
	Redacts string          `json:"redacts"`
	Sticky  *stickyInfo     `json:"msc4354_sticky"`
}

// viewer is who an event is formatted for: transaction_id is only shown
// to the device that sent the event.
type viewer struct {
	UserID   string
	DeviceID string
}

// toClient formats a stored event for a client at nowMS (for
// unsigned.age: milliseconds since this server received the event).
func toClient(e storage.Event, v viewer, nowMS int64, withRoomID bool) clientEvent {
	var f pduFields
	_ = json.Unmarshal(e.JSON, &f) // stored JSON was validated on the way in
	if len(f.Content) == 0 {
		f.Content = json.RawMessage("{}")
	}
	ce := clientEvent{
		Content:        f.Content,
		EventID:        e.EventID,
		OriginServerTS: e.OriginTS,
		Sender:         e.Sender,
		StateKey:       e.StateKey,
		Type:           e.Type,
		Redacts:        f.Redacts,
		Unsigned:       map[string]any{"age": max(nowMS-e.ReceivedTS, 0)},
	}
	if withRoomID {
		ce.RoomID = e.RoomID
	}
	if f.Sticky != nil {
		// MSC4354: the remaining time is shown only while it is sticky.
		ce.Sticky = f.Sticky
		if ttl := stickyTTL(*f.Sticky, e.OriginTS, e.ReceivedTS, nowMS); ttl > 0 {
			ce.Unsigned["msc4354_sticky_duration_ttl_ms"] = ttl
		}
	}
	if e.TxnID != "" && e.Sender == v.UserID && e.TxnDevice == v.DeviceID {
		ce.Unsigned["transaction_id"] = e.TxnID
	}
	if len(e.UnsignedExtra) > 0 {
		var extra map[string]any
		if json.Unmarshal(e.UnsignedExtra, &extra) == nil {
			for k, val := range extra {
				ce.Unsigned[k] = val
			}
		}
	}
	if e.RedactedBy != "" {
		ce.Unsigned["redacted_because"] = map[string]any{"event_id": e.RedactedBy}
	}
	return ce
}

func toClientList(evs []storage.Event, v viewer, nowMS int64, withRoomID bool) []clientEvent {
	out := make([]clientEvent, 0, len(evs))
	for _, e := range evs {
		out = append(out, toClient(e, v, nowMS, withRoomID))
	}
	return out
}
