package storage

import (
	"strings"
	"sync"
	"sync/atomic"
)

// timelineWindow keeps each room's most recent timeline events in memory,
// filled by the writer at commit, so that an incremental /sync (the
// commonest read of a busy server) reads no database at all.
//
// It is only correct when every event insert goes through this process's
// writer, so it is used with SQLite (one process owns the file) and not
// with PostgreSQL, where other nodes of a cluster may write. A room's
// window covers every timeline event with floor < pos <= the global
// applied position; a commit that touches a room without reporting its
// events drops that room's window (the safe fallback for any write path
// that does not feed the window).
type timelineWindow struct {
	members memberships

	mu      sync.Mutex
	rooms   map[string]*roomWindow
	applied int64 // every commit up to here is in the windows
}

type roomWindow struct {
	floor int64
	evs   []Event // ascending pos, at most windowEvents
}

const (
	windowEvents = 64
	windowRooms  = 20000
)

// pendingWindow is what one write reported for the windows.
type pendingWindow struct {
	events   []Event
	redacted bool // the write redacted an event
}

// apply records one committed write: its events, its redactions, and the
// rooms it touched. pos is the write's highest position.
func (w *timelineWindow) apply(pos int64, p pendingWindow, keys []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rooms == nil {
		w.rooms = make(map[string]*roomWindow)
	}
	fed := make(map[string]bool, 1)
	// Any write that changes a membership row touches KeyMembers of its
	// room (local appends and federation's state changes alike).
	for _, k := range keys {
		if strings.HasPrefix(k, keyMembersPrefix) {
			w.members.gen.Add(1)
			break
		}
	}
	for _, e := range p.events {
		if e.Outlier {
			continue // not timeline; the room's window is dropped below
		}
		fed[e.RoomID] = true
		rw := w.rooms[e.RoomID]
		if rw == nil {
			if len(w.rooms) >= windowRooms {
				w.rooms = make(map[string]*roomWindow)
			}
			// Nothing is known of the room before this event.
			rw = &roomWindow{floor: e.Pos - 1}
			w.rooms[e.RoomID] = rw
		}
		if n := len(rw.evs); n > 0 && rw.evs[n-1].Pos >= e.Pos {
			delete(w.rooms, e.RoomID) // out of order: never expected
			continue
		}
		if len(rw.evs) == windowEvents {
			rw.floor = rw.evs[0].Pos
			copy(rw.evs, rw.evs[1:])
			rw.evs = rw.evs[:windowEvents-1]
		}
		rw.evs = append(rw.evs, e)
	}
	// A redaction rewrites an event that may be in the window of a room
	// the write touched (the room of the m.room.redaction event): those
	// windows start again. Redactions are rare.
	for _, k := range keys {
		if len(k) > 0 && k[0] == '!' && (!fed[k] || p.redacted) {
			delete(w.rooms, k)
		}
	}
	if pos > w.applied {
		w.applied = pos
	}
}

// timeline answers DB.Timeline from memory when it can: the events with
// after < pos <= upto, the latest limit of them, and whether older ones
// exist in that range.
func (w *timelineWindow) timeline(roomID string, after, upto int64, limit int) ([]Event, bool, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	rw := w.rooms[roomID]
	if rw == nil || upto > w.applied || limit < 0 {
		return nil, false, false
	}
	lo, hi := len(rw.evs), len(rw.evs)
	for i, e := range rw.evs {
		if e.Pos > after && lo == len(rw.evs) {
			lo = i
		}
		if e.Pos > upto {
			hi = i
			break
		}
	}
	if lo > hi {
		lo = hi
	}
	n := hi - lo
	switch {
	case n > limit:
		// More than limit in range: the window decides alone.
		out := make([]Event, limit)
		copy(out, rw.evs[hi-limit:hi])
		return out, true, true
	case after >= rw.floor:
		if n == 0 {
			return nil, false, true
		}
		out := make([]Event, n)
		copy(out, rw.evs[lo:hi])
		return out, false, true
	}
	return nil, false, false // the range reaches below the window
}

// memberships caches DB.Memberships per user, with the same single-writer
// condition as the window. The writer bumps gen after committing any
// write that touched a room's members (before it notifies anyone), and a reader stores
// what it read under the generation it loaded before its query, so a
// result read while a membership change was in flight is never served.
type memberships struct {
	gen atomic.Uint64
	mu  sync.Mutex
	m   map[string]memberEntry
}

type memberEntry struct {
	gen uint64
	ms  []RoomMembership
}

func (c *memberships) get(userID string) ([]RoomMembership, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[userID]
	if !ok || e.gen != c.gen.Load() {
		return nil, false
	}
	return append([]RoomMembership(nil), e.ms...), true
}

func (c *memberships) put(userID string, gen uint64, ms []RoomMembership) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= readCacheLimit {
		c.m = make(map[string]memberEntry)
	}
	c.m[userID] = memberEntry{gen: gen, ms: append([]RoomMembership(nil), ms...)}
}
