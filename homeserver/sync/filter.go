package sync

import (
	"strings"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Filter is the part of a sync filter (spec: Client-Server API,
// "Filtering") that /sync applies.
type Filter struct {
	Room struct {
		Rooms        []string        `json:"rooms"`
		NotRooms     []string        `json:"not_rooms"`
		IncludeLeave bool            `json:"include_leave"`
		Timeline     RoomEventFilter `json:"timeline"`
		State        RoomEventFilter `json:"state"`
	} `json:"room"`
}

// TimelineLimit is the number of timeline events per room: the filter's,
// at most 500, 10 by default.
func (f *Filter) TimelineLimit() int {
	if f.Room.Timeline.Limit > 0 {
		return min(f.Room.Timeline.Limit, 500)
	}
	return 10
}

// WantsRoom reports whether the filter lets roomID through.
func (f *Filter) WantsRoom(roomID string) bool {
	if f.Room.Rooms != nil && !MatchAny(f.Room.Rooms, roomID) {
		return false
	}
	return !MatchAny(f.Room.NotRooms, roomID)
}

// RoomEventFilter is the part of a RoomEventFilter (spec: "Filtering")
// that /messages, /context and /sync apply.
type RoomEventFilter struct {
	Limit      int      `json:"limit"`
	Types      []string `json:"types"`
	NotTypes   []string `json:"not_types"`
	Senders    []string `json:"senders"`
	NotSenders []string `json:"not_senders"`
	LazyLoad   bool     `json:"lazy_load_members"`
}

// Allows reports whether e passes the filter; a nil filter passes all.
func (f *RoomEventFilter) Allows(e storage.Event) bool {
	if f == nil {
		return true
	}
	if len(f.Types) > 0 && !MatchAny(f.Types, e.Type) {
		return false
	}
	if MatchAny(f.NotTypes, e.Type) {
		return false
	}
	if len(f.Senders) > 0 && !MatchAny(f.Senders, e.Sender) {
		return false
	}
	return !MatchAny(f.NotSenders, e.Sender)
}

// MatchAny matches value against patterns where "*" is a wildcard.
func MatchAny(patterns []string, value string) bool {
	for _, p := range patterns {
		if p == value || p == "*" {
			return true
		}
		if strings.HasSuffix(p, "*") && strings.HasPrefix(value, strings.TrimSuffix(p, "*")) {
			return true
		}
	}
	return false
}
