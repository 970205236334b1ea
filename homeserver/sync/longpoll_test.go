package sync

import (
	"slices"
	"testing"
	"time"
)

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type syncResult struct {
	resp *Response
	err  error
}

func (f *fixture) syncAsync(userID string, since *Token, timeout time.Duration) <-chan syncResult {
	done := make(chan syncResult, 1)
	go func() {
		resp, err := f.syncer.Sync(f.ctx, &Request{UserID: userID, DeviceID: "DEV", Since: since}, timeout)
		done <- syncResult{resp, err}
	}()
	return done
}

// TestLongPollTimeoutOnFakeClock: a quiet long-poll answers, empty, when
// the fake clock passes its timeout, without real waiting.
func TestLongPollTimeoutOnFakeClock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		_, pos := f.join(room, alice)
		since := f.token(first(f.build(alice, nil, pos)))
		done := f.syncAsync(alice, since, 30*time.Second)
		waitUntil(t, "the long-poll listens", func() bool { return f.notes.Waiting(room) > 0 && f.clock.Pending() > 0 })
		f.clock.Advance(30*time.Second - time.Millisecond)
		select {
		case r := <-done:
			t.Fatalf("answered before the timeout: %+v", r)
		default:
		}
		f.clock.Advance(time.Millisecond)
		r := <-done
		if r.err != nil || len(r.resp.Rooms.Join) != 0 || r.resp.NextBatch != since.String() {
			t.Fatalf("timeout answer: %v, rooms %v, next %q (since %q)", r.err, r.resp.Rooms.Join, r.resp.NextBatch, since)
		}
	})
}

// TestLongPollWokenByCommit: a commit to the user's room wakes the
// long-poll, which answers with it (and with nothing of a room the user
// is not in, committed first).
func TestLongPollWokenByCommit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		_, pos := f.join(room, alice)
		f.join("!other:test", bob)
		since := f.token(first(f.build(alice, nil, pos)))
		done := f.syncAsync(alice, since, time.Hour)
		waitUntil(t, "the long-poll listens", func() bool { return f.notes.Waiting(room) > 0 })
		f.message("!other:test", bob)
		m, _ := f.message(room, bob)
		r := <-done
		if r.err != nil || len(r.resp.Rooms.Join) != 1 || r.resp.Rooms.Join[room] == nil ||
			!slices.Equal(ids(r.resp.Rooms.Join[room].Timeline.Events), []string{m}) {
			t.Fatalf("woken answer: %v, %+v", r.err, r.resp.Rooms.Join[room])
		}
	})
}
