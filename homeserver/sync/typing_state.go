package sync

import (
	"sort"
	"time"
)

// TypingState is who types in which room until when, with a serial that
// moves on every change; each room keeps the serial of its last change.
// The zero value is empty and ready. It does no locking: its owner holds
// its own lock around every call (LocalEphemeral here, the cluster's
// shared typing in homeserver/cluster).
type TypingState struct {
	serial int64
	rooms  map[string]*typingRoom
}

type typingRoom struct {
	serial int64
	users  map[string]time.Time
}

// Set records that userID types in roomID until expires (typing) or has
// stopped, and reports whether that changed who types. seen is a serial
// heard from elsewhere (0 for none): the serial first moves past it, a
// Lamport clock, so a change heard from another node sorts after what
// that node had seen.
func (t *TypingState) Set(roomID, userID string, typing bool, expires time.Time, seen int64) bool {
	if t.rooms == nil {
		t.rooms = make(map[string]*typingRoom)
	}
	r := t.rooms[roomID]
	if r == nil {
		r = &typingRoom{users: make(map[string]time.Time)}
		t.rooms[roomID] = r
	}
	_, was := r.users[userID]
	if typing {
		r.users[userID] = expires
	} else {
		delete(r.users, userID)
	}
	t.serial = max(t.serial, seen)
	changed := typing != was
	if changed {
		t.serial++
		r.serial = t.serial
	}
	return changed
}

// Serial returns the serial of the last change.
func (t *TypingState) Serial() int64 { return t.serial }

// Position drops the entries expired at now (each a change) and returns
// the serial.
func (t *TypingState) Position(now time.Time) int64 {
	for _, r := range t.rooms {
		for u, exp := range r.users {
			if now.After(exp) {
				delete(r.users, u)
				t.serial++
				r.serial = t.serial
			}
		}
	}
	return t.serial
}

// Since returns who types in roomID, sorted, if the room changed after
// since; false when it did not.
func (t *TypingState) Since(roomID string, since int64) ([]string, bool) {
	r := t.rooms[roomID]
	if r == nil || r.serial <= since {
		return nil, false
	}
	users := make([]string, 0, len(r.users))
	for u := range r.users {
		users = append(users, u)
	}
	sort.Strings(users)
	return users, true
}
