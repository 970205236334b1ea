package homeserver

import (
	"sort"
	"sync"
	"time"

	"github.com/switchboard-chat/switchboard/internal/clock"
)

// typingTracker holds who is typing in which room, in memory: typing
// notifications are ephemeral (spec: Client-Server API, "Typing
// Notifications") and expire by themselves.
type typingTracker struct {
	clock    clock.Clock
	notifier Notifier

	mu sync.Mutex // guards serial and rooms
	// serial increases with every change; a /sync token carries it.
	serial int64
	// rooms maps room ID → user ID → expiry, and remembers the serial of
	// the room's last change.
	rooms map[string]*typingRoom
}

type typingRoom struct {
	serial int64
	users  map[string]time.Time
}

func newTypingTracker(c clock.Clock, n Notifier) *typingTracker {
	return &typingTracker{clock: c, notifier: n, rooms: make(map[string]*typingRoom)}
}

// Set marks userID typing in roomID until timeout passes, or not typing.
func (t *typingTracker) Set(roomID, userID string, typing bool, timeout time.Duration) {
	t.mu.Lock()
	r := t.rooms[roomID]
	if r == nil {
		r = &typingRoom{users: make(map[string]time.Time)}
		t.rooms[roomID] = r
	}
	_, was := r.users[userID]
	if typing {
		r.users[userID] = t.clock.Now().Add(timeout)
	} else {
		delete(r.users, userID)
	}
	changed := typing != was
	if changed {
		t.serial++
		r.serial = t.serial
	}
	t.mu.Unlock()
	if changed {
		t.notifier.Notify(0, roomID)
	}
}

// Serial returns the current serial, expiring stale entries first.
func (t *typingTracker) Serial() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
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

// Typing returns the users typing in roomID if the room changed after
// serial since (ok false if unchanged).
func (t *typingTracker) Typing(roomID string, since int64) (users []string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.rooms[roomID]
	if r == nil || r.serial <= since {
		return nil, false
	}
	users = make([]string, 0, len(r.users))
	for u := range r.users {
		users = append(users, u)
	}
	sort.Strings(users)
	return users, true
}
