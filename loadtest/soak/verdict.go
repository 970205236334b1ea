package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// check is one line of the verdict.
type check struct {
	Name   string
	OK     bool
	Detail string
}

// passed reports whether every check held.
func passed(v []check) bool {
	for _, c := range v {
		if !c.OK {
			return false
		}
	}
	return true
}

func metricIndex(key string) int {
	for i, m := range metrics {
		if m.Key == key {
			return i
		}
	}
	return -1
}

// settled reports whether every settling metric of s is back at its
// baseline value within tolerance.
func settled(base, s sample) bool {
	for i, m := range metrics {
		if m.Settles && s.Values[i] > base.Values[i]+m.Tolerance {
			return false
		}
	}
	return true
}

// describe prints the settling metrics of a sample.
func describe(s sample) string {
	var b strings.Builder
	for i, m := range metrics {
		if m.Settles || m.Grows {
			fmt.Fprintf(&b, "%s=%.1f ", m.Key, s.Values[i])
		}
	}
	return strings.TrimSpace(b.String())
}

// slope fits v = a + b·t by least squares and returns b.
func slope(ts, vs []float64) float64 {
	n := float64(len(ts))
	if n < 2 {
		return 0
	}
	var st, sv, stt, stv float64
	for i := range ts {
		st += ts[i]
		sv += vs[i]
		stt += ts[i] * ts[i]
		stv += ts[i] * vs[i]
	}
	den := n*stt - st*st
	if den == 0 {
		return 0
	}
	return (n*stv - st*sv) / den
}

// growthAllowance is how much a memory series (MiB) may grow across the
// last third of the load by its fitted slope and still count as noise:
// 10 % of its mean there plus 8 MiB (the GC's own swing on this heap).
func growthAllowance(mean float64) float64 { return 0.10*mean + 8 }

// relayedPercent is the share of the 1:1 calls' UDP packets the TURN
// relay must deliver.
const relayedPercent = 95

// verdict judges a run.
func verdict(r *result) []check {
	var v []check
	for i, m := range metrics {
		if !m.Settles {
			continue
		}
		b, f := r.Baseline.Values[i], r.Final.Values[i]
		v = append(v, check{Name: m.Key + " back to start", OK: f <= b+m.Tolerance,
			Detail: fmt.Sprintf("start %.0f, end %.0f, tolerance +%.0f", b, f, m.Tolerance)})
	}
	// The load phase's last third.
	var load []sample
	for _, s := range r.Samples {
		if s.Phase == "load" {
			load = append(load, s)
		}
	}
	third := load[len(load)-len(load)/3:]
	for i, m := range metrics {
		if !m.Grows {
			continue
		}
		if len(third) < 3 {
			v = append(v, check{Name: m.Key + " not growing", OK: false, Detail: "fewer than 3 samples in the last third of the load; sample more often"})
			continue
		}
		var ts, vs []float64
		mean := 0.0
		for _, s := range third {
			ts = append(ts, s.T)
			vs = append(vs, s.Values[i])
			mean += s.Values[i]
		}
		mean /= float64(len(vs))
		growth := slope(ts, vs) * (ts[len(ts)-1] - ts[0])
		v = append(v, check{Name: m.Key + " not growing", OK: growth <= growthAllowance(mean),
			Detail: fmt.Sprintf("last third: fitted growth %+.1f MiB over %.0f s (mean %.1f, allowed %.1f)",
				growth, ts[len(ts)-1]-ts[0], mean, growthAllowance(mean))})
	}
	nerr := 0
	for _, n := range r.Errors {
		nerr += n
	}
	v = append(v, check{Name: "no request errors", OK: nerr == 0, Detail: fmt.Sprintf("%d errors in %d requests %v", nerr, r.Requests, r.Errors)})
	v = append(v, check{Name: "every acknowledged message delivered", OK: r.Undelivered == 0 && r.Acked > 0,
		Detail: fmt.Sprintf("%d acknowledged; %s", r.Acked, r.Delivery)})
	// UDP may drop a packet on a loaded loopback; a relay that works
	// passes nearly all of them.
	v = append(v, check{Name: "1:1 calls relayed through TURN", OK: r.Calls.Placed > 0 && r.Calls.PacketsGot*100 >= r.Calls.PacketsSent*relayedPercent,
		Detail: fmt.Sprintf("%d placed, %d hung up, %d vanished; %d of %d packets relayed", r.Calls.Placed, r.Calls.Completed, r.Calls.Vanished, r.Calls.PacketsGot, r.Calls.PacketsSent)})
	v = append(v, check{Name: "group calls carried media", OK: r.Group.Calls > 0 && r.Group.Failed == 0,
		Detail: fmt.Sprintf("%d calls, %d joins, %d vanished, %d failed", r.Group.Calls, r.Group.Joins, r.Group.Vanished, r.Group.Failed)})
	v = append(v, check{Name: "metrics scraped", OK: r.ScrapeErrs == 0, Detail: fmt.Sprintf("%d samples, %d scrape errors", len(r.Samples), r.ScrapeErrs)})
	return v
}

// writeOutputs writes samples.csv, one PNG per metric and verdict.txt to
// dir.
func writeOutputs(dir string, r *result) error {
	f, err := os.Create(filepath.Join(dir, "samples.csv"))
	if err != nil {
		return err
	}
	if err := writeCSV(f, r.Samples); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for i, m := range metrics {
		ts := make([]float64, len(r.Samples))
		vs := make([]float64, len(r.Samples))
		for j, s := range r.Samples {
			ts[j], vs[j] = s.T, s.Values[i]
		}
		if err := writePlot(filepath.Join(dir, m.Key+".png"), m.Label, ts, vs, r.LoadEnd); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "verdict.txt"), []byte(report(r)), 0o644)
}

// report is the human-readable summary.
func report(r *result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "requests %d, acknowledged messages %d, churned users %d\n", r.Requests, r.Acked, r.Churned)
	fmt.Fprintf(&b, "start: %s\nend:   %s\n", describe(r.Baseline), describe(r.Final))
	peak := make([]float64, len(metrics))
	for _, s := range r.Samples {
		for i, v := range s.Values {
			peak[i] = math.Max(peak[i], v)
		}
	}
	b.WriteString("peak: ")
	for i, m := range metrics {
		if m.Settles || m.Grows {
			fmt.Fprintf(&b, "%s=%.1f ", m.Key, peak[i])
		}
	}
	b.WriteString("\n")
	for _, c := range r.Verdict {
		mark := "PASS"
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "%s  %-40s %s\n", mark, c.Name, c.Detail)
	}
	for _, s := range r.Delivery.MissingSamples {
		fmt.Fprintf(&b, "missing: %s\n", s)
	}
	for _, s := range r.ErrSamples {
		fmt.Fprintf(&b, "error: %s\n", s)
	}
	if passed(r.Verdict) {
		b.WriteString("verdict: PASS\n")
	} else {
		b.WriteString("verdict: FAIL\n")
	}
	return b.String()
}
