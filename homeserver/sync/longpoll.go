package sync

import (
	"context"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// BuildFunc builds one answer of a long-poll for storage positions up to
// committed, given the user's memberships, and reports whether it is
// empty (worth waiting past).
type BuildFunc func(ctx context.Context, committed int64, ms []storage.RoomMembership) (empty bool, err error)

// LongPoll runs build until it is not empty, then returns. With timeout
// 0 it runs build once. Otherwise it waits after an empty answer for a
// wake-up of the user's key or one of their joined rooms, and returns
// (with the last, empty answer built) when timeout passes on the clock or
// the server shuts down; it returns ctx's error when ctx ends first. /sync
// and sliding sync (MSC4186) both wait here.
func (s *Syncer) LongPoll(ctx context.Context, userID string, timeout time.Duration, build BuildFunc) error {
	timeout = min(timeout, MaxTimeout)
	var timer <-chan time.Time
	if timeout > 0 {
		t := s.cfg.Clock.NewTimer(timeout)
		defer t.Stop()
		timer = t.C()
	}
	for {
		// Listen before reading, so that a write landing in between still
		// wakes this request. The keys are the user and their rooms; a new
		// membership notifies the user's key too.
		ms, err := s.cfg.Store.Memberships(ctx, userID)
		if err != nil {
			return err
		}
		keys := make([]string, 0, len(ms)+1)
		keys = append(keys, userID)
		for _, m := range ms {
			if m.Membership == spec.Join {
				keys = append(keys, m.RoomID)
			}
		}
		committed, woken, cancel := s.cfg.Notifier.Listen(keys)
		empty, err := build(ctx, committed, ms)
		if err != nil || !empty || timer == nil {
			cancel()
			return err
		}
		select {
		case <-woken:
		case <-timer:
			cancel()
			return nil
		case <-s.cfg.Shutdown:
			cancel()
			return nil
		case <-ctx.Done():
			cancel()
			return ctx.Err()
		}
	}
}
