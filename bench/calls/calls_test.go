package main

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/internal/testbin"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestSmoke runs the tool against the real binary with 3 joins per
// scenario and 2 streamers, and checks that every join went through every
// phase, in order. No timing thresholds: the figures are in README.md.
// The binary comes from internal/testbin (built before the deadline below
// starts, never inside it).
func TestSmoke(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	rep := smokeRun(t, 3*time.Minute, "-protocol", "native", "-joins", "3", "-load", "2", "-load-subs", "1", "-join-timeout", "30s")
	if len(rep.Scenarios) != 2 {
		t.Fatalf("%d scenarios, want idle and loaded", len(rep.Scenarios))
	}
	for _, s := range rep.Scenarios {
		if len(s.Phases) != len(phaseNames) {
			t.Fatalf("%s: %d phases", s.Name, len(s.Phases))
		}
		prev := 0.0
		for _, p := range s.Phases[:4] {
			if p.FromInvite.Count != 3 {
				t.Errorf("%s: %s observed in %d joins, want 3", s.Name, p.Phase, p.FromInvite.Count)
			}
			if p.FromInvite.P50 <= 0 || p.FromInvite.P50 < prev {
				t.Errorf("%s: %s at %.1f ms after the invite, before the phase before it (%.1f ms)", s.Name, p.Phase, p.FromInvite.P50, prev)
			}
			prev = p.FromInvite.P50
		}
		if v := s.Phases[4].FromInvite; v.Count != 3 || v.P50 <= 0 {
			t.Errorf("%s: first video %+v", s.Name, v)
		}
	}
}

// TestSmokeLiveKit runs the LiveKit mode with 3 joins and checks each
// went through every phase, in order (lkclient: OpenID, /sfu/get, the
// /rtc/v1 WebSocket, publish, the publisher's first key frame packet).
func TestSmokeLiveKit(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	rep := smokeRun(t, 2*time.Minute, "-protocol", "livekit", "-joins", "3", "-join-timeout", "30s")
	if len(rep.Scenarios) != 1 || rep.Scenarios[0].Protocol != "livekit" {
		t.Fatalf("scenarios %+v, want the LiveKit one only", rep.Scenarios)
	}
	s := rep.Scenarios[0]
	if len(s.Phases) != len(lkPhaseNames) {
		t.Fatalf("%d phases", len(s.Phases))
	}
	prev := 0.0
	for _, p := range s.Phases {
		if p.FromInvite.Count != 3 || p.FromInvite.P50 <= 0 || p.FromInvite.P50 < prev {
			t.Errorf("%s: %+v (phase before at %.1f ms)", p.Phase, p.FromInvite, prev)
		}
		prev = p.FromInvite.P50
	}
}

// smokeRun runs the bench with args against the test binary and fails
// the test on any error or failed join.
func smokeRun(t *testing.T, within time.Duration, args ...string) *report {
	t.Helper()
	cfg, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.serverBin = testbin.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	rep, err := run(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.failed() {
		t.Fatalf("failures: %v %+v", rep.Errors, rep.Scenarios)
	}
	return rep
}

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

func TestSummarise(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if got, want := summarise(d), (dist{Count: 100, P50: 50, P99: 99, Max: 100}); got != want {
		t.Fatalf("summarise = %+v, want %+v", got, want)
	}
	if got := summarise(nil); got != (dist{}) {
		t.Fatalf("no samples: %+v", got)
	}
}

func TestFlags(t *testing.T) {
	for _, bad := range [][]string{{"-joins", "0"}, {"-load", "-1"}, {"-load", "3", "-load-subs", "3"}, {"extra"}, {"-protocol", "sip"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}
