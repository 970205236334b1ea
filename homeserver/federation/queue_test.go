package federation

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/clock"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// nowhere is a destination the test resolver cannot find: every
// transaction to it fails at once.
const nowhere = "nowhere.test"

func queueEDU(t *testing.T, f *Service) {
	t.Helper()
	err := f.queue.enqueueEDUs(context.Background(), map[string][][]byte{nowhere: {[]byte(`{"edu_type":"m.typing","content":{}}`)}})
	if err != nil {
		t.Fatal(err)
	}
}

func backoffOf(t *testing.T, f *Service) storage.Backoff {
	t.Helper()
	bo, err := f.db.DestinationBackoff(context.Background(), nowhere)
	if err != nil {
		t.Fatal(err)
	}
	return bo
}

// TestQueueBackoffFollowsClock: a destination that fails is retried after
// RetryMin, then twice as long each time up to RetryMax, and the waits
// are the clock's: nothing is retried until the fake clock is advanced.
func TestQueueBackoffFollowsClock(t *testing.T) {
	fake := clock.NewFake(time.Unix(1_800_000_000, 0))
	f := newTestService(t, storagetest.Backends(t)[0], fake, func(c *Config) {
		c.Options.RetryMin, c.Options.RetryMax = time.Minute, 4*time.Minute
	})
	queueEDU(t, f)
	for i, wait := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 4 * time.Minute} {
		failures := i + 1
		want := fake.Now().Add(wait).UnixMilli()
		testkit.Eventually(t, 60*time.Second, "the sender to fail and back off on the fake clock", func() bool {
			bo := backoffOf(t, f)
			// The sender has armed its backoff timer (the scanner's ticker
			// is the other pending one) once it recorded the failure.
			return bo.Failures == failures && fake.Pending() >= 2
		})
		if bo := backoffOf(t, f); bo.RetryAt != want {
			t.Fatalf("failure %d: retry at %d, want %d (now + %v)", failures, bo.RetryAt, want, wait)
		}
		fake.Advance(wait)
	}
}

// gatedLease is a SenderLease that grants a destination only when the
// test says so, and records releases.
type gatedLease struct {
	grant chan struct{}

	mu       sync.Mutex // guards asked and released
	asked    []string
	released []string
}

func (l *gatedLease) Acquire(ctx context.Context, dest string) (func(), error) {
	l.mu.Lock()
	l.asked = append(l.asked, dest)
	l.mu.Unlock()
	select {
	case <-l.grant:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.released = append(l.released, dest)
	}, nil
}

func (l *gatedLease) seen() (asked, released []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.asked...), append([]string(nil), l.released...)
}

// TestSenderLeaseGatesSending: a destination's sender sends nothing until
// its lease is granted, and gives the lease back when the queue stops.
func TestSenderLeaseGatesSending(t *testing.T) {
	lease := &gatedLease{grant: make(chan struct{})}
	f := newTestService(t, storagetest.Backends(t)[0], clock.Real(), func(c *Config) {
		c.Options.RetryMin, c.Options.RetryMax = time.Hour, time.Hour
		c.Lease = lease
	})
	queueEDU(t, f)
	testkit.Eventually(t, 60*time.Second, "the sender to ask for the destination's lease", func() bool {
		asked, _ := lease.seen()
		return len(asked) == 1 && asked[0] == nowhere
	})
	// The sender is blocked in Acquire: it cannot have tried yet.
	if bo := backoffOf(t, f); bo.Failures != 0 {
		t.Fatalf("sent before the lease was granted: %+v", bo)
	}
	close(lease.grant)
	testkit.Eventually(t, 60*time.Second, "the sender to try once the lease is granted", func() bool {
		return backoffOf(t, f).Failures == 1
	})
	f.Close()
	if _, released := lease.seen(); len(released) != 1 || released[0] != nowhere {
		t.Fatalf("lease released %v after Close, want [%s]", released, nowhere)
	}
}
