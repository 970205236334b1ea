package livekit

import (
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/switchboard-chat/switchboard/sfu"
)

// TestConnectionQualityGrades is the grading table of connectionQuality.
func TestConnectionQualityGrades(t *testing.T) {
	for _, tc := range []struct {
		name string
		q    sfu.Quality
		want livekit.ConnectionQuality
	}{
		{"publishes nothing", sfu.Quality{}, livekit.ConnectionQuality_EXCELLENT},
		{"clean", sfu.Quality{Streams: 2, Jitter: 5 * time.Millisecond}, livekit.ConnectionQuality_EXCELLENT},
		{"some loss", sfu.Quality{Streams: 2, Loss: 0.05}, livekit.ConnectionQuality_GOOD},
		{"jittery", sfu.Quality{Streams: 1, Jitter: 80 * time.Millisecond}, livekit.ConnectionQuality_GOOD},
		{"very jittery, no loss", sfu.Quality{Streams: 1, Jitter: time.Second}, livekit.ConnectionQuality_GOOD},
		{"heavy loss", sfu.Quality{Streams: 2, Loss: 0.10}, livekit.ConnectionQuality_POOR},
		{"all lost", sfu.Quality{Streams: 2, Loss: 1}, livekit.ConnectionQuality_POOR},
	} {
		got, score := connectionQuality(tc.q)
		if got != tc.want || score < 1 || score > 5 {
			t.Errorf("%s: %v score %.2f, want %v with a score in [1, 5]", tc.name, got, score, tc.want)
		}
	}
}

// TestConnectionQuality: bob's uplink loses every third packet (the Go
// client skips them, so the SFU sees gaps it cannot have resent), alice's
// loses none. Both are sent ConnectionQualityUpdates of both: bob POOR,
// alice GOOD or EXCELLENT. When bob's uplink heals, he is no longer POOR.
func TestConnectionQuality(t *testing.T) {
	e, hc, alice, bob, room := callEnvWith(t, envOpts{server: func(c *ServerConfig) {
		c.QualityInterval = 200 * time.Millisecond
	}})
	a := lkJoin(t, e, hc, alice, room, "alice")
	defer a.Close()
	b := lkJoin(t, e, hc, bob, room, "bob")
	defer b.Close()
	b.SetSendLoss(3)
	good := func(q livekit.ConnectionQuality, ok bool) bool {
		return ok && (q == livekit.ConnectionQuality_GOOD || q == livekit.ConnectionQuality_EXCELLENT)
	}
	poor := func(q livekit.ConnectionQuality, ok bool) bool { return ok && q == livekit.ConnectionQuality_POOR }
	for _, c := range []struct {
		who string
		cl  interface {
			Quality(string) (livekit.ConnectionQuality, bool)
		}
	}{{"alice", a}, {"bob", b}} {
		waitFor(t, c.who+" to be told bob is POOR and alice is not", func() bool {
			return poor(c.cl.Quality(b.SID())) && good(c.cl.Quality(a.SID()))
		})
	}
	b.SetSendLoss(0)
	waitFor(t, "alice to be told bob is no longer POOR", func() bool { return good(a.Quality(b.SID())) })
}
