// Package testkit holds the helpers that Switchboard's tests and tools
// share, so that each exists once: polling a condition with a deadline
// (this file), a throwaway redis-server (redis.go) and, in rtcclient, a
// WebRTC test client.
//
// It is for tests and for the programs under bench/, loadtest/ and tests/;
// the switchboard program never imports it (imports_test.go at the module
// root holds that). It imports no package of ours.
package testkit

import (
	"context"
	"testing"
	"time"
)

// Poll intervals: a condition is asked again after firstInterval, then at
// twice the interval before, up to maxInterval, so that a quick condition is
// seen at once and a slow one does not keep a shared machine busy.
const (
	firstInterval = 2 * time.Millisecond
	maxInterval   = 50 * time.Millisecond
)

// Poll asks cond until it returns true or ctx ends, and returns ctx's error
// in that case. cond runs on the caller's goroutine, never concurrently
// with itself.
func Poll(ctx context.Context, cond func() bool) error {
	interval := firstInterval
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		interval = min(2*interval, maxInterval)
		timer.Reset(interval)
	}
	return nil
}

// Eventually asks cond until it returns true, and fails tb with what when
// within passes first. It is the one poll-until helper of Go tests: a test
// waits for a condition with a deadline, never for a fixed time. Deadlines
// are generous bounds for a loaded machine, not timing assertions. Call it
// from the test's goroutine (it may call tb.Fatalf).
func Eventually(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if Poll(ctx, cond) != nil {
		// One last look: cond may have come true while the deadline passed.
		if cond() {
			return
		}
		tb.Fatalf("timed out after %s waiting for %s", within, what)
	}
}
