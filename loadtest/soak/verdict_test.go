package main

import (
	"fmt"
	"testing"
)

// leakRun is a passing 3-minute run as TestSoakShort samples it (every
// 2 s, 90 load samples): every settling metric back at its start, memory
// flat with noise; plant changes it.
func leakRun(plant func(r *result, i int, v []float64)) *result {
	mk := func(t float64, phase string) sample {
		v := make([]float64, len(metrics))
		v[metricIndex("goroutines")] = 35
		v[metricIndex("open_fds")] = 33
		v[metricIndex("rss_mib")] = 80
		v[metricIndex("heap_inuse_mib")] = 30
		return sample{T: t, Phase: phase, Values: v}
	}
	r := &result{Acked: 700}
	r.Calls.Placed, r.Calls.PacketsSent, r.Calls.PacketsGot = 30, 6000, 6000
	r.Group.Calls = 20
	r.Baseline = mk(0, "start")
	for i := 0; i < 90; i++ {
		s := mk(float64(2+2*i), "load")
		// The GC's own saw-tooth: ±3 MiB.
		s.Values[metricIndex("heap_inuse_mib")] += float64(i%4) * 2
		s.Values[metricIndex("rss_mib")] += float64(i%3) * 2
		s.Values[metricIndex("goroutines")] = 300
		if plant != nil {
			plant(r, i, s.Values)
		}
		r.Samples = append(r.Samples, s)
	}
	r.Final = mk(240, "settle")
	if plant != nil {
		plant(r, -1, r.Final.Values)
	}
	return r
}

// TestVerdictCatchesLeaks: a clean run passes, and each leak planted into
// it fails exactly the check that watches it: a few goroutines, fds, TURN
// allocations, SFU participants or conferences or focus calls left
// behind; heap (30 MiB) or RSS (80 MiB) climbing by 20 or 30 MiB a
// minute; a request error; an undelivered message. Slower memory growth
// can hide within the 3-minute run's allowance (8 MiB plus 10 % of the
// mean over its last minute): slow leaks are the 60-minute runs' job.
func TestVerdictCatchesLeaks(t *testing.T) {
	left := func(key string, n float64) func(*result, int, []float64) {
		return func(_ *result, i int, v []float64) {
			if i < 0 {
				v[metricIndex(key)] += n
			}
		}
	}
	climb := func(key string, perMinute float64) func(*result, int, []float64) {
		return func(_ *result, i int, v []float64) {
			if i >= 0 {
				v[metricIndex(key)] += perMinute * float64(2*i) / 60
			}
		}
	}
	cases := []struct {
		name  string
		plant func(*result, int, []float64)
		fails string
	}{
		{"clean", nil, ""},
		{"31 goroutines left", left("goroutines", 31), "goroutines back to start"},
		{"13 fds left", left("open_fds", 13), "open_fds back to start"},
		{"one TURN allocation left", left("turn_allocations", 1), "turn_allocations back to start"},
		{"one SFU participant left", left("sfu_participants", 1), "sfu_participants back to start"},
		{"one SFU conference left", left("sfu_conferences", 1), "sfu_conferences back to start"},
		{"one focus call left", left("focus_calls", 1), "focus_calls back to start"},
		{"heap +20 MiB a minute", climb("heap_inuse_mib", 20), "heap_inuse_mib not growing"},
		{"RSS +30 MiB a minute", climb("rss_mib", 30), "rss_mib not growing"},
		{"a request error", func(r *result, i int, _ []float64) {
			if i < 0 {
				r.Errors = map[string]int{"send": 1}
			}
		}, "no request errors"},
		{"an undelivered message", func(r *result, i int, _ []float64) {
			if i < 0 {
				r.Undelivered = 1
			}
		}, "every acknowledged message delivered"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var failed []string
			for _, c := range verdict(leakRun(tc.plant)) {
				if !c.OK {
					failed = append(failed, c.Name)
				}
			}
			want := "[]"
			if tc.fails != "" {
				want = fmt.Sprint([]string{tc.fails})
			}
			if got := fmt.Sprint(failed); got != want {
				t.Errorf("failed checks %s, want %s", got, want)
			}
		})
	}
}
