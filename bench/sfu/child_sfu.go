package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/switchboard-chat/switchboard/sfu"
)

// benchBitrate pins every subscriber's bandwidth estimate (bits/s): high
// enough for the top layer of every publisher a subscriber receives in the
// largest room, so that the benchmark measures forwarding, not the
// allocator's choices.
const benchBitrate = 50_000_000

// sfuChild runs an sfu.SFU on a loopback UDP socket, as the sfu package's
// own tests do, and joins participants on the parent's request.
type sfuChild struct {
	io  *childIO
	s   *sfu.SFU
	reg *prometheus.Registry

	mu sync.Mutex
	ps map[string]*sfu.Participant
	// snapshots counts the allocation profile snapshots written at
	// "stats" (SFUBENCH_PROFILE): the difference of two consecutive ones
	// is what one measurement window allocated.
	snapshots int
}

func newSFUChild(io *childIO) (*sfuChild, error) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	s, err := sfu.New(sfu.Config{UDPMux: conn, AutoSubscribe: true, Registerer: reg,
		InitialBitrate: benchBitrate, MinBitrate: benchBitrate, MaxBitrate: benchBitrate,
		MaxParticipantsPerConference: 1000}) // 1 -> 100 and more
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return &sfuChild{io: io, s: s, reg: reg, ps: map[string]*sfu.Participant{}}, nil
}

func (c *sfuChild) handle(m msg) msg {
	switch m.Op {
	case "join":
		id := m.ID
		h := sfu.Handler{
			OnOffer: func(sdp string) { c.io.send(msg{Op: "offer", ID: id, SDP: sdp}) },
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p, answer, err := c.s.Join(ctx, m.Conf, id, m.SDP, h)
		if err != nil {
			return errMsg(err)
		}
		c.mu.Lock()
		c.ps[id] = p
		c.mu.Unlock()
		return msg{Op: "answer", ID: id, SDP: answer}
	case "answer":
		c.mu.Lock()
		p := c.ps[m.ID]
		c.mu.Unlock()
		if p == nil {
			return errMsg(fmt.Errorf("no participant %q", m.ID))
		}
		if err := p.HandleAnswer(m.SDP); err != nil {
			return errMsg(err)
		}
		return msg{Op: "ok"}
	case "stats":
		st := snapshot()
		if dir := os.Getenv(profileEnv); dir != "" {
			c.mu.Lock()
			c.snapshots++
			n := c.snapshots
			c.mu.Unlock()
			writeAllocSnapshot(dir, n)
		}
		st.Resent = c.counter("switchboard_sfu_retransmitted_packets_total")
		st.Forwarded = c.counter("switchboard_sfu_forwarded_packets_total") - st.Resent
		st.Dropped = c.counter("switchboard_sfu_dropped_packets_total")
		return msg{Op: "stats", Stats: &st}
	case "mem":
		return msg{Op: "mem", Stats: &stats{Heap: heapAfterGC()}}
	}
	return errMsg(fmt.Errorf("unknown op %q", m.Op))
}

// heapAfterGC is the heap in use once garbage is collected.
func heapAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// counter reads one counter of the SFU's registry.
func (c *sfuChild) counter(name string) uint64 {
	mfs, err := c.reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return uint64(counterValue(mf.GetMetric()[0]))
		}
	}
	return 0
}

func counterValue(m *dto.Metric) float64 { return m.GetCounter().GetValue() }

func (c *sfuChild) close() {
	c.mu.Lock()
	ps := make([]*sfu.Participant, 0, len(c.ps))
	for _, p := range c.ps {
		ps = append(ps, p)
	}
	c.mu.Unlock()
	for _, p := range ps {
		_ = p.Close()
	}
	_ = c.s.Close()
}

// snapshot reads the CPU time and allocation count first, so that the
// reply's own work falls after the mark.
func snapshot() stats {
	cpu := processCPU()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return stats{CPU: cpu, Mallocs: ms.Mallocs, NumGC: ms.NumGC, Goroutines: runtime.NumGoroutine()}
}

// writeAllocSnapshot writes the allocation profile so far as
// allocs-sfu-<pid>-<n>.pprof in dir; `go tool pprof -sample_index=alloc_objects
// -diff_base <n> <n+1>` shows one window's allocation sites.
func writeAllocSnapshot(dir string, n int) {
	runtime.GC() // the profile shows allocations up to the last GC
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("allocs-sfu-%d-%d.pprof", os.Getpid(), n)))
	if err != nil {
		return
	}
	_ = pprof.Lookup("allocs").WriteTo(f, 0)
	_ = f.Close()
}
