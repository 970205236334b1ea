package main

import (
	"errors"
	"testing"
	"time"
)

func TestSummarise(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := summarise(d)
	want := dist{Count: 100, P50: 50, P90: 90, P99: 99, Max: 100, Mean: 50.5}
	if got != want {
		t.Fatalf("summarise = %+v, want %+v", got, want)
	}
	if one := summarise([]time.Duration{7 * time.Millisecond}); one.P50 != 7 || one.P99 != 7 || one.Max != 7 {
		t.Fatalf("one sample: %+v", one)
	}
	if empty := summarise(nil); empty != (dist{}) {
		t.Fatalf("no samples: %+v", empty)
	}
}

func TestMessageBody(t *testing.T) {
	for _, tc := range []struct {
		body     string
		idx, seq int
		ok       bool
	}{
		{messageBody("ltab", 7, 42), 7, 42, true},
		{"ltab:0:0", 0, 0, true},
		{"ltcd:7:42", 0, 0, false}, // another run
		{"ltab:7", 0, 0, false},
		{"ltab:-1:3", 0, 0, false},
		{"ltab:x:3", 0, 0, false},
		{"hello", 0, 0, false},
	} {
		idx, seq, ok := parseBody(tc.body, "ltab")
		if ok != tc.ok || ok && (idx != tc.idx || seq != tc.seq) {
			t.Errorf("parseBody(%q) = %d, %d, %v; want %d, %d, %v", tc.body, idx, seq, ok, tc.idx, tc.seq, tc.ok)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	busy, total, err := parseProcStat("cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	if err != nil || busy != 1.6 || total != 10 {
		t.Fatalf("got %v, %v, %v; want 1.6, 10", busy, total, err)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8", "cpu 1 2 3", "cpu 1 2 3 x 5 6 7 8"} {
		if _, _, err := parseProcStat(bad); !errors.Is(err, errProcStat) {
			t.Errorf("parseProcStat(%q): %v, want errProcStat", bad, err)
		}
	}
	if _, _, err := machineCPU(); err != nil {
		t.Fatalf("this machine's /proc/stat: %v", err)
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"-users", "100", "-rooms", "10", "-interval", "100ms", "-duration", "60s"}, nil)
	if err != nil || c.users != 100 || c.rooms != 10 || c.interval != 100*time.Millisecond || c.duration != time.Minute {
		t.Fatalf("got %+v, %v", c, err)
	}
	for _, bad := range [][]string{
		{"-users", "0"}, {"-users", "5", "-rooms", "6"}, {"-interval", "0s"},
		{"-duration", "2h"}, {"-database", "sqlite:x"}, {"extra"},
	} {
		if _, err := parseFlags(bad, discard{}); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func FuzzParseBody(f *testing.F) {
	f.Add("ltab:7:42")
	f.Add("ltab::")
	f.Add("ltab:99999999999999999999:1")
	f.Fuzz(func(t *testing.T, body string) {
		idx, seq, ok := parseBody(body, "ltab")
		if !ok {
			return
		}
		if idx < 0 || seq < 0 {
			t.Fatalf("parseBody(%q) = %d, %d", body, idx, seq)
		}
		if back, _, _ := parseBody(messageBody("ltab", idx, seq), "ltab"); back != idx {
			t.Fatalf("round trip of %q: %d", body, back)
		}
	})
}

func FuzzParseProcStat(f *testing.F) {
	f.Add("cpu  100 5 50 800 40 3 2 0 0 0\n")
	f.Add("cpu 0 0 0 0 0 0 0 0\n")
	f.Fuzz(func(t *testing.T, s string) {
		busy, total, err := parseProcStat(s)
		if err == nil && (busy < 0 || busy > total) {
			t.Fatalf("parseProcStat(%q) = %v, %v", s, busy, total)
		}
	})
}
