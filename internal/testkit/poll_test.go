package testkit

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestPollReturnsWhenTrue(t *testing.T) {
	var calls atomic.Int32
	err := Poll(context.Background(), func() bool { return calls.Add(1) == 5 })
	if err != nil || calls.Load() != 5 {
		t.Fatalf("err %v after %d calls, want nil after 5", err, calls.Load())
	}
}

func TestPollEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	err := Poll(ctx, func() bool {
		if calls.Add(1) == 3 {
			cancel()
		}
		return false
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// fakeTB records a Fatalf instead of ending the test.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = format
}

func TestEventuallyFailsAfterDeadline(t *testing.T) {
	tb := &fakeTB{TB: t}
	Eventually(tb, 20*time.Millisecond, "never", func() bool { return false })
	if tb.failed == "" {
		t.Fatal("Eventually did not fail on a condition that never holds")
	}
	tb = &fakeTB{TB: t}
	Eventually(tb, time.Minute, "soon", func() bool { return true })
	if tb.failed != "" {
		t.Fatalf("Eventually failed on a condition that holds: %s", tb.failed)
	}
}
