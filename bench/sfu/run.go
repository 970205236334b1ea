package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// scenario is one load shape: rooms of participants, of which the first
// pubs publish; every participant receives every other's tracks.
type scenario struct {
	name  string
	rooms int
	pubs  int // publishers per room
	subs  int // receive-only participants per room
}

// parseScenarios reads "-subscribers 1,5" (one publisher to N
// subscribers) and "-rooms 4x4" (R rooms of P participants who all publish
// and all receive).
func parseScenarios(subscribers, rooms string) ([]scenario, error) {
	var out []scenario
	for _, f := range splitList(subscribers) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad subscriber count %q", f)
		}
		out = append(out, scenario{name: fmt.Sprintf("1 pub -> %d sub", n), rooms: 1, pubs: 1, subs: n})
	}
	for _, f := range splitList(rooms) {
		r, p, ok := strings.Cut(f, "x")
		nr, err1 := strconv.Atoi(r)
		np, err2 := strconv.Atoi(p)
		if !ok || err1 != nil || err2 != nil || nr < 1 || np < 2 {
			return nil, fmt.Errorf("bad room shape %q (want RxP, P >= 2)", f)
		}
		out = append(out, scenario{name: fmt.Sprintf("%d rooms of %d", nr, np), rooms: nr, pubs: np})
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// receiversPerPublisher is how many participants receive each publisher.
func (sc scenario) receiversPerPublisher() int { return sc.pubs - 1 + sc.subs }

// expectedPPS is the forwarded packet rate the scenario should produce.
func (sc scenario) expectedPPS() int {
	return sc.rooms * sc.pubs * sc.receiversPerPublisher() * forwardedPPS()
}

// options are the run's knobs.
type options struct {
	warmup, duration time.Duration
	reference        bool
}

// result is one forwarder's figures for one scenario.
type result struct {
	forwarder string
	window    time.Duration
	forwarded uint64 // by the forwarder's own count, first sends
	resent    uint64 // NACK retransmissions (SFU only)
	received  uint64 // by the receivers
	sent      uint64 // by the publishers
	cpu       time.Duration
	mallocs   float64 // corrected for the control round trip
	numGC     uint32
	dropped   uint64
	p50, p99  time.Duration
	clientCPU time.Duration // the parent's (clients') CPU in the window
	// heapPerParticipant is the forwarder's heap growth (after a
	// collection) from before the first join to the end of the window,
	// per participant, in bytes; 0 if not measured.
	heapPerParticipant float64
	// goroutines left in the child after shutdown, and before start.
	goroutinesAfter, goroutinesBefore int
}

func (r result) pps() float64 { return float64(r.forwarded) / r.window.Seconds() }

// perCPUSecond is forwarded packets per CPU-second of the forwarder.
func (r result) perCPUSecond() float64 {
	if r.cpu <= 0 {
		return 0
	}
	return float64(r.forwarded) / r.cpu.Seconds()
}

func (r result) allocsPerPacket() float64 {
	if r.forwarded == 0 {
		return 0
	}
	return r.mallocs / float64(r.forwarded)
}

// measure waits until the receivers get at least 90% of the expected rate,
// lets the run settle for o.warmup, then measures for o.duration.
func measure(ctl *child, rec *recorder, sc scenario, o options, errs func() error) (result, error) {
	want := float64(sc.expectedPPS()) * 0.9
	deadline := time.Now().Add(30*time.Second + o.warmup)
	for {
		if err := errs(); err != nil {
			return result{}, err
		}
		before := rec.packets.Load()
		time.Sleep(500 * time.Millisecond)
		if float64(rec.packets.Load()-before)*2 >= want {
			break
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("%w: %s: %.0f packets/s received, want %.0f", errNoTraffic, sc.name,
				float64(rec.packets.Load()-before)*2, want)
		}
	}
	time.Sleep(o.warmup)
	// Two snapshots back to back give the cost of one control round trip
	// (JSON, metrics gathering), subtracted from the window's count.
	s0, err := ctl.stats()
	if err != nil {
		return result{}, err
	}
	rec.reset()
	clientCPU0 := processCPU()
	start := time.Now()
	s1, err := ctl.stats()
	if err != nil {
		return result{}, err
	}
	time.Sleep(o.duration)
	s2, err := ctl.stats()
	window := time.Since(start)
	if err != nil {
		return result{}, err
	}
	h := rec.hist.Load()
	return result{
		window:    window,
		forwarded: s2.Forwarded - s1.Forwarded,
		resent:    s2.Resent - s1.Resent,
		received:  rec.packets.Load(),
		sent:      rec.sent.Load(),
		cpu:       s2.CPU - s1.CPU,
		mallocs:   float64(s2.Mallocs-s1.Mallocs) - float64(s1.Mallocs-s0.Mallocs),
		numGC:     s2.NumGC - s1.NumGC,
		dropped:   s2.Dropped - s1.Dropped,
		p50:       h.quantile(0.50),
		p99:       h.quantile(0.99),
		clientCPU: processCPU() - clientCPU0,
	}, nil
}

// runSFU runs sc against the SFU in a child process with pion clients.
func runSFU(sc scenario, o options) (res result, err error) {
	var mu sync.Mutex
	clients := map[string]*pionClient{}
	ctl, err := startChild("sfu", func(m msg) {
		mu.Lock()
		c := clients[m.ID]
		mu.Unlock()
		if c != nil {
			c.deliverOffer(m.SDP)
		}
	})
	if err != nil {
		return result{}, err
	}
	var list []*pionClient
	defer func() {
		for _, c := range list {
			c.close()
		}
		st, cerr := ctl.close()
		if err == nil && cerr != nil {
			err = cerr
		}
		res.goroutinesAfter, res.goroutinesBefore = st.Goroutines, st.Baseline
	}()
	heap0, err := ctl.heap()
	if err != nil {
		return result{}, err
	}
	rec := newRecorder()
	for r := range sc.rooms {
		conf := fmt.Sprintf("room%d", r)
		for i := range sc.pubs + sc.subs {
			id := fmt.Sprintf("r%dp%d", r, i)
			c, err := newPionClient(ctl, conf, id, i < sc.pubs, rec)
			if err != nil {
				return result{}, err
			}
			mu.Lock()
			clients[id] = c
			mu.Unlock()
			list = append(list, c)
			if err := c.join(); err != nil {
				return result{}, err
			}
		}
	}
	errs := func() error {
		for _, c := range list {
			select {
			case err := <-c.errs:
				return err
			default:
			}
		}
		return nil
	}
	res, err = measure(ctl, rec, sc, o, errs)
	res.forwarder = "sfu"
	if err != nil {
		return res, err
	}
	heap1, err := ctl.heap()
	if err != nil {
		return res, err
	}
	res.heapPerParticipant = (float64(heap1) - float64(heap0)) / float64(len(list))
	return res, nil
}

// runRef runs sc against the reference forwarder with plain UDP clients.
func runRef(sc scenario, o options) (res result, err error) {
	ctl, err := startChild("ref", nil)
	if err != nil {
		return result{}, err
	}
	var list []*udpClient
	defer func() {
		for _, c := range list {
			c.close()
		}
		st, cerr := ctl.close()
		if err == nil && cerr != nil {
			err = cerr
		}
		res.goroutinesAfter, res.goroutinesBefore = st.Goroutines, st.Baseline
	}()
	rec := newRecorder()
	var routes []route
	var pubs []*udpClient
	for range sc.rooms {
		room := make([]*udpClient, 0, sc.pubs+sc.subs)
		for range sc.pubs + sc.subs {
			c, err := newUDPClient(len(pubs)+len(room), rec)
			if err != nil {
				return result{}, err
			}
			list = append(list, c)
			room = append(room, c)
		}
		for i := range sc.pubs {
			rt := route{SSRCs: []uint32{ssrc(room[i].index, audioStream), ssrc(room[i].index, 2)}}
			for j, c := range room {
				if j != i {
					rt.Dests = append(rt.Dests, c.addr())
				}
			}
			routes = append(routes, rt)
			pubs = append(pubs, room[i])
		}
		// Receive-only participants keep their index slots unused.
		for range sc.subs {
			pubs = append(pubs, nil)
		}
	}
	r, err := ctl.call(msg{Op: "ref_setup", Routes: routes})
	if err != nil {
		return result{}, err
	}
	if len(r.Ports) != len(routes) {
		return result{}, fmt.Errorf("reference forwarder opened %d sockets, want %d", len(r.Ports), len(routes))
	}
	k := 0
	for _, c := range pubs {
		if c == nil {
			continue
		}
		c.startPublishing(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: r.Ports[k]})
		k++
	}
	res, err = measure(ctl, rec, sc, o, func() error { return nil })
	res.forwarder = "reference"
	return res, err
}
