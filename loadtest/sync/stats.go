package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// dist summarises a set of durations.
type dist struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// summarise sorts d in place and returns its nearest-rank percentiles.
func summarise(d []time.Duration) dist {
	if len(d) == 0 {
		return dist{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	return dist{
		Count: len(d),
		P50:   ms(percentile(d, 50)),
		P90:   ms(percentile(d, 90)),
		P99:   ms(percentile(d, 99)),
		Max:   ms(d[len(d)-1]),
		Mean:  ms(sum / time.Duration(len(d))),
	}
}

// percentile is the nearest-rank p-th percentile of sorted d (not empty).
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(p/100*float64(len(sorted))+0.999999999) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// report is the outcome of one run, printed as a table or as JSON.
type report struct {
	Database string  `json:"database"`
	Users    int     `json:"users"`
	Rooms    int     `json:"rooms"`
	Interval string  `json:"interval"`
	Duration string  `json:"duration"`
	Window   float64 `json:"window_s"` // sending time plus drain, seconds
	Machine  string  `json:"machine"`

	Delivery dist `json:"delivery"` // send start → member's sync response received
	Send     dist `json:"send"`     // PUT /send round trip

	SendsTarget  float64 `json:"sends_per_s_target"`
	SendsPerSec  float64 `json:"sends_per_s"`
	SyncsPerSec  float64 `json:"syncs_per_s"`
	SendsOK      int64   `json:"sends_ok"`
	SkippedTicks int64   `json:"skipped_ticks"` // sends not made because the previous one was still running
	Expected     int64   `json:"deliveries_expected"`
	Missing      int64   `json:"deliveries_missing"`
	Duplicates   int64   `json:"deliveries_duplicate"`
	Limited      int64   `json:"limited_timelines"`

	Errors       int64          `json:"errors"`
	ErrorsByKind map[string]int `json:"errors_by_kind,omitempty"`
	ErrorSamples []string       `json:"error_samples,omitempty"`

	ServerCPU float64 `json:"server_cpu_s"` // utime+stime of the server during the window
	ToolCPU   float64 `json:"tool_cpu_s"`   // the same for this load tool
	// MachineBusy is the CPU time all processes of the machine used in the
	// window (the database and anything else running included), out of
	// MachineCPU available (window × CPUs).
	MachineBusy float64 `json:"machine_busy_cpu_s"`
	MachineCPU  float64 `json:"machine_cpu_s"`
	ServerLog   string  `json:"server_log,omitempty"`
	ServerArgs  string  `json:"server_args"`
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *report) writeTable(w io.Writer) {
	fmt.Fprintf(w, "switchboard sync load: %d users in %d rooms, one message per user every %s for %s, database %s\n",
		r.Users, r.Rooms, r.Interval, r.Duration, r.Database)
	fmt.Fprintf(w, "machine: %s\n\n", r.Machine)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency (ms)\tcount\tp50\tp90\tp99\tmax\tmean\t")
	for _, row := range []struct {
		name string
		d    dist
	}{{"send→sync delivery", r.Delivery}, {"PUT /send", r.Send}} {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", row.name, row.d.Count, row.d.P50, row.d.P90, row.d.P99, row.d.Max, row.d.Mean)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "sends/s\t%.1f (target %.1f; %d ok, %d ticks skipped)\n", r.SendsPerSec, r.SendsTarget, r.SendsOK, r.SkippedTicks)
	fmt.Fprintf(tw, "syncs/s\t%.1f\n", r.SyncsPerSec)
	fmt.Fprintf(tw, "deliveries\t%d expected, %d missing, %d duplicate, %d limited timelines\n", r.Expected, r.Missing, r.Duplicates, r.Limited)
	fmt.Fprintf(tw, "errors\t%d%s\n", r.Errors, kinds(r.ErrorsByKind))
	fmt.Fprintf(tw, "server CPU\t%.2f s in %.1f s (%.0f%% of one core)\n", r.ServerCPU, r.Window, 100*r.ServerCPU/r.Window)
	fmt.Fprintf(tw, "load tool CPU\t%.2f s (%.0f%% of one core)\n", r.ToolCPU, 100*r.ToolCPU/r.Window)
	fmt.Fprintf(tw, "machine CPU\t%.2f s busy of %.2f s (all processes: server, tool, database, others)\n", r.MachineBusy, r.MachineCPU)
	tw.Flush()
	for _, s := range r.ErrorSamples {
		fmt.Fprintf(w, "  error: %s\n", s)
	}
}

func kinds(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(" (")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k + ": " + strconv.Itoa(m[k]))
	}
	b.WriteString(")")
	return b.String()
}
