package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// metric is one series the soak samples from the server's /metrics.
type metric struct {
	// Key names the series in the CSV and the plot file.
	Key string
	// Prom is the Prometheus metric name; values of all its label sets
	// are summed.
	Prom string
	// Unit scales the value for the plot's axis (1 or 1<<20 for MiB).
	Unit float64
	// Label is the plot's title.
	Label string
	// Settles: the verdict wants it back at its start value (within
	// Tolerance, absolute, in the metric's own unit) once load stops.
	Settles   bool
	Tolerance float64
	// Grows: the verdict checks its slope over the last third of the run.
	Grows bool
}

// metrics are the series sampled, from the server's own collectors:
// Go runtime and process (cmd/switchboard/health.go), TURN (turn/metrics.go),
// SFU (sfu/metrics.go) and the focus (signalling/metrics.go).
var metrics = []metric{
	{Key: "goroutines", Prom: "go_goroutines", Unit: 1, Label: "GOROUTINES", Settles: true, Tolerance: 30},
	{Key: "open_fds", Prom: "process_open_fds", Unit: 1, Label: "OPEN FDS", Settles: true, Tolerance: 12},
	{Key: "turn_allocations", Prom: "switchboard_turn_allocations", Unit: 1, Label: "TURN ALLOCATIONS", Settles: true},
	{Key: "sfu_participants", Prom: "switchboard_sfu_participants", Unit: 1, Label: "SFU PARTICIPANTS", Settles: true},
	{Key: "sfu_conferences", Prom: "switchboard_sfu_conferences", Unit: 1, Label: "SFU CONFERENCES", Settles: true},
	{Key: "focus_calls", Prom: "switchboard_focus_calls", Unit: 1, Label: "FOCUS CALLS", Settles: true},
	{Key: "rss_mib", Prom: "process_resident_memory_bytes", Unit: 1 << 20, Label: "RSS MIB", Grows: true},
	{Key: "heap_inuse_mib", Prom: "go_memstats_heap_inuse_bytes", Unit: 1 << 20, Label: "HEAP IN USE MIB", Grows: true},
	{Key: "threads", Prom: "go_threads", Unit: 1, Label: "OS THREADS"},
	{Key: "sync_requests", Prom: "switchboard_homeserver_sync_requests_total", Unit: 1, Label: "SYNC REQUESTS TOTAL"},
	{Key: "turn_relayed_packets", Prom: "switchboard_turn_relayed_packets_total", Unit: 1, Label: "TURN RELAYED PACKETS TOTAL"},
	{Key: "sfu_forwarded_packets", Prom: "switchboard_sfu_forwarded_packets_total", Unit: 1, Label: "SFU FORWARDED PACKETS TOTAL"},
}

// sample is one scrape: seconds since the start and one value per metric
// (in the metric's unit), in the order of metrics.
type sample struct {
	T      float64
	Phase  string
	Values []float64
}

// scrape reads one /metrics page and returns the values of metrics.
func scrape(ctx context.Context, hc *http.Client, url string) ([]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: /metrics answered %d", ErrScrape, resp.StatusCode)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the Prometheus text exposition format far enough to
// sum each wanted metric over its label sets.
func parseMetrics(r io.Reader) ([]float64, error) {
	idx := make(map[string]int, len(metrics))
	for i, m := range metrics {
		idx[m.Prom] = i
	}
	vals := make([]float64, len(metrics))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		i, ok := idx[name]
		if !ok {
			continue
		}
		if j := strings.LastIndexByte(rest, '}'); j >= 0 {
			rest = rest[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrScrape, line, err)
		}
		vals[i] += v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for i := range vals {
		vals[i] /= metrics[i].Unit
	}
	return vals, nil
}

// sampler scrapes every interval until stopped.
type sampler struct {
	url   string
	hc    *http.Client
	start time.Time

	mu      sync.Mutex
	phase   string
	samples []sample
	errs    int
}

func (s *sampler) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

// once takes one sample now.
func (s *sampler) once(ctx context.Context) (sample, error) {
	vals, err := scrape(ctx, s.hc, s.url)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errs++
		return sample{}, err
	}
	sm := sample{T: time.Since(s.start).Seconds(), Phase: s.phase, Values: vals}
	s.samples = append(s.samples, sm)
	return sm, nil
}

func (s *sampler) loop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = s.once(ctx)
		}
	}
}

func (s *sampler) snapshot() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.samples...)
}

// writeCSV writes one row per sample: t_seconds, phase, then the metrics.
func writeCSV(w io.Writer, samples []sample) error {
	cw := csv.NewWriter(w)
	head := []string{"t_seconds", "phase"}
	for _, m := range metrics {
		head = append(head, m.Key)
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	for _, s := range samples {
		row := []string{strconv.FormatFloat(s.T, 'f', 1, 64), s.Phase}
		for _, v := range s.Values {
			row = append(row, strconv.FormatFloat(v, 'f', -1, 64))
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
