package main

import (
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// binary is the switchboard binary from internal/testbin
// ($SWITCHBOARD_TEST_BINARY, or built once per package run), taken before
// any test's clock starts.
func binary(t *testing.T) string { return testbin.Binary(t) }

// TestSoakShort runs the whole mix for 3 minutes against two real servers and
// fails on a leak: goroutines, fds, TURN allocations, SFU participants
// and conferences and focus calls must return to their start values once
// the load stops, memory must not grow across the last third, and no
// request may fail or acknowledged message go undelivered.
func TestSoakShort(t *testing.T) {
	bin := binary(t)
	cfg := defaultConfig()
	cfg.serverBin = bin
	cfg.duration = 3 * time.Minute
	cfg.sample = 2 * time.Second
	cfg.settle = 60 * time.Second
	cfg.users, cfg.rooms, cfg.fedUsers = 16, 4, 3
	cfg.groupHold = 5 * time.Second
	cfg.out = t.TempDir()
	if dir := os.Getenv("SOAK_OUT"); dir != "" {
		cfg.out = dir
	}
	var progress strings.Builder
	res, err := run(context.Background(), cfg, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	t.Logf("\n%s", report(res))
	for _, c := range res.Verdict {
		if !c.OK {
			t.Errorf("%s: %s", c.Name, c.Detail)
		}
	}
	for _, m := range metrics {
		f, err := os.Open(filepath.Join(cfg.out, m.Key+".png"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = png.Decode(f)
		f.Close()
		if err != nil {
			t.Errorf("%s.png: %v", m.Key, err)
		}
	}
}

// TestParseMetrics sums label sets and skips what is not asked for.
func TestParseMetrics(t *testing.T) {
	page := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
process_resident_memory_bytes 2.097152e+06
switchboard_turn_allocations{transport="udp"} 2
switchboard_turn_allocations{transport="tcp"} 1
switchboard_sfu_participants{node="a b}"} 3
something_else 7
`
	vals, err := parseMetrics(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"goroutines": 42, "rss_mib": 2, "turn_allocations": 3, "sfu_participants": 3, "open_fds": 0}
	for k, w := range want {
		if got := vals[metricIndex(k)]; got != w {
			t.Errorf("%s = %v, want %v", k, got, w)
		}
	}
	if _, err := parseMetrics(strings.NewReader("go_goroutines x\n")); err == nil {
		t.Error("a non-numeric value was accepted")
	}
}

// TestVerdict fails a run whose goroutines stay up and whose heap climbs.
func TestVerdict(t *testing.T) {
	mk := func(tm float64, phase string, g, heap float64) sample {
		v := make([]float64, len(metrics))
		v[metricIndex("goroutines")] = g
		v[metricIndex("heap_inuse_mib")] = heap
		v[metricIndex("rss_mib")] = 50
		return sample{T: tm, Phase: phase, Values: v}
	}
	r := &result{Acked: 1}
	r.Calls.Placed, r.Group.Calls = 1, 1
	for i := 0; i < 30; i++ {
		r.Samples = append(r.Samples, mk(float64(i), "load", 100, 10+float64(i)*3))
	}
	r.Baseline, r.Final = mk(0, "start", 50, 10), mk(40, "settle", 200, 100)
	bad := map[string]bool{}
	for _, c := range verdict(r) {
		if !c.OK {
			bad[c.Name] = true
		}
	}
	if !bad["goroutines back to start"] || !bad["heap_inuse_mib not growing"] || bad["rss_mib not growing"] || len(bad) != 2 {
		t.Errorf("failed checks %v, want goroutines and heap only", bad)
	}
}

// FuzzParseMetrics: any page parses or errors, never panics, and yields
// one value per metric.
func FuzzParseMetrics(f *testing.F) {
	f.Add("go_goroutines 1\n")
	f.Add("switchboard_turn_allocations{a=\"}\"} 2\n# x\n\n")
	f.Add("go_goroutines{")
	f.Add("go_goroutines NaN\nprocess_open_fds +Inf")
	f.Fuzz(func(t *testing.T, page string) {
		vals, err := parseMetrics(strings.NewReader(page))
		if err == nil && len(vals) != len(metrics) {
			t.Fatalf("%d values for %d metrics", len(vals), len(metrics))
		}
	})
}

// TestPlot draws a chart that decodes as a PNG of the stated size.
func TestPlot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.png")
	if err := writePlot(path, "GOROUTINES", []float64{0, 1, 2, 3}, []float64{5, 50, 20, 5}, 2); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != plotW || b.Dy() != plotH {
		t.Errorf("size %v", b)
	}
	for r, g := range font3x5 {
		if len(g) != glyphW*glyphH {
			t.Errorf("glyph %q has %d pixels", r, len(g))
		}
	}
}
