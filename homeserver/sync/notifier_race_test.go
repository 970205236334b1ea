package sync

import (
	stdsync "sync"
	"sync/atomic"
	"testing"
)

// TestNotifierLastForNeverBehindPosition: once Position says a position
// is committed, LastFor of every key notified at or below it says so too.
// A /sync that reads Position as its upper bound skips a room whose
// LastFor is at or below its since token (stream_rooms.go "quiet"); if
// the position moved first and LastFor a moment later, that /sync
// answered with a next_batch past the room's new event without the
// event, and the client never saw it (the soak's witnesses lost about 1
// message in 10,000 that way). Every position here is notified under one
// key, so LastFor(key) < Position() is that window.
func TestNotifierLastForNeverBehindPosition(t *testing.T) {
	const commits = 200000
	n := NewLocalNotifier(0)
	var done atomic.Bool
	var behind atomic.Int64
	var wg stdsync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				p := n.Position()
				if l := n.LastFor("!room"); l < p {
					behind.Add(1)
				}
			}
		}()
	}
	for pos := int64(1); pos <= commits; pos++ {
		n.Notify(pos, "!room")
	}
	done.Store(true)
	wg.Wait()
	if b := behind.Load(); b > 0 {
		t.Fatalf("%d times a reader saw Position past LastFor of the key notified at that position", b)
	}
}
