package sfu

import (
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/internal/testkit"
	"github.com/switchboard-chat/switchboard/media"
)

// TestLeaveReleasesGoroutines: while the SFU keeps running for the
// others, a participant who published and received, then left, leaves no
// goroutine behind: the count returns to what it was before it joined.
func TestLeaveReleasesGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	s := newTestSFU(t, nil)
	defer s.Close()
	alice := joinClient(t, s, "rel", "alice", clientOpts{audio: true, video: true, level: 127})
	defer alice.close()
	bob := joinClient(t, s, "rel", "bob", clientOpts{audio: true, video: true, level: 127})
	defer bob.close()
	for _, c := range []*testClient{alice, bob} {
		other := "bob"
		if c == bob {
			other = "alice"
		}
		testkit.Eventually(t, testTimeout, c.id+" receiving "+other, func() bool {
			r := c.track(other + "-video")
			return r != nil && r.Packets.Load() > 20
		})
	}
	baseline := settledGoroutines()

	carol := joinClient(t, s, "rel", "carol", clientOpts{audio: true, video: true, level: 127})
	testkit.Eventually(t, testTimeout, "alice receiving carol", func() bool {
		r := alice.track("carol-video")
		return r != nil && r.Packets.Load() > 20
	})
	testkit.Eventually(t, testTimeout, "carol receiving bob", func() bool {
		r := carol.track("bob-video")
		return r != nil && r.Packets.Load() > 20
	})
	during := runtime.NumGoroutine()
	if err := carol.p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-carol.closed; !errors.Is(err, ErrLeft) {
		t.Errorf("close reason %v", err)
	}
	carol.close()
	testkit.Eventually(t, testTimeout, "goroutines back to the count before carol joined", func() bool {
		return runtime.NumGoroutine() <= baseline
	})
	t.Logf("goroutines: %d with alice and bob, %d with carol, %d after she left",
		baseline, during, runtime.NumGoroutine())
	if during <= baseline {
		t.Errorf("carol's call started no goroutine (%d, baseline %d): the check proves nothing", during, baseline)
	}
}

// settledGoroutines waits until the goroutine count has not changed for
// 300 ms (pion starts and ends short-lived ones) and returns it.
func settledGoroutines() int {
	deadline := time.Now().Add(5 * time.Second)
	last, since := runtime.NumGoroutine(), time.Now()
	for time.Now().Before(deadline) && time.Since(since) < 300*time.Millisecond {
		time.Sleep(20 * time.Millisecond)
		if n := runtime.NumGoroutine(); n != last {
			last, since = n, time.Now()
		}
	}
	return last
}

// TestNACKUpstreamOnCacheMiss: a subscriber NACKs a packet the cache no
// longer holds; the SFU asks the publisher for the source packet (RFC 4585
// generic NACK with the publisher's SSRC and sequence number), at most
// once per throttle interval; a packet still cached is resent and not asked
// for.
func TestNACKUpstreamOnCacheMiss(t *testing.T) {
	up, d, w := benchDownTrack(t, 16)
	var mu sync.Mutex
	var sent []rtcp.Packet
	up.writeRTCP = func(p []rtcp.Packet) error {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, p...)
		return nil
	}
	l := up.layers[0]
	l.ssrc = 0xabc
	payload := make([]byte, 200)
	for seq := range uint16(40) {
		meta := media.PacketMeta{SequenceNumber: 1000 + seq, Timestamp: uint32(seq) * 3000, Keyframe: true}
		l.cache.Put(payload, &meta)
		d.forward(0, 1000+seq)
	}
	last := d.rw.LastSequenceNumber() // output sequence number of source 1039
	out := func(src uint16) uint16 { return last - (1039 - src) }

	d.retransmit(out(1002)) // evicted: asked upstream
	d.retransmit(out(1003)) // evicted too, but within the throttle interval
	before := w.n
	d.retransmit(out(1038)) // cached: resent
	if w.n == before {
		t.Error("cached packet not resent")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 1 {
		t.Fatalf("%d upstream RTCP packets, want 1: %v", len(sent), sent)
	}
	n, ok := sent[0].(*rtcp.TransportLayerNack)
	if !ok || n.MediaSSRC != 0xabc || len(n.Nacks) != 1 || !slices.Equal(n.Nacks[0].PacketList(), []uint16{1002}) {
		t.Errorf("upstream feedback %+v, want a NACK of 1002 for SSRC 0xabc", sent[0])
	}
}

// TestICEServersHandedOut: the TURN/STUN servers configured are what the
// SFU gives signalling to hand to clients, as a copy.
func TestICEServersHandedOut(t *testing.T) {
	servers := []webrtc.ICEServer{{URLs: []string{"turn:turn.example.org:3478"}, Username: "u", Credential: "c"}}
	s := newTestSFU(t, func(c *Config) { c.ICEServers = servers })
	defer s.Close()
	got := s.ICEServers()
	if len(got) != 1 || got[0].URLs[0] != "turn:turn.example.org:3478" || got[0].Username != "u" {
		t.Fatalf("ICEServers() = %+v", got)
	}
	got[0] = webrtc.ICEServer{}
	if s.ICEServers()[0].Username != "u" {
		t.Error("ICEServers() hands out the SFU's own slice")
	}
}

// TestReceiverReportsEchoSenderReports: the SFU's receiver reports to a
// publisher carry the LSR of the publisher's sender reports (RFC 3550
// section 6.4.1), so the publisher can measure the round trip; and
// hasSenderReport finds sender reports in compound packets only.
func TestReceiverReportsEchoSenderReports(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	s := newTestSFU(t, nil)
	defer s.Close()
	pub := joinClient(t, s, "rr", "pub", clientOpts{audio: true, video: true, level: 127})
	defer pub.close()
	testkit.Eventually(t, testTimeout, "a receiver report echoing a sender report", func() bool { return pub.rtc.ReportsWithLSR() > 0 })

	srPkt, _ := (&rtcp.SenderReport{SSRC: 1}).Marshal()
	rrPkt, _ := (&rtcp.ReceiverReport{SSRC: 1}).Marshal()
	tcc := []byte{0x8f, 205, 0, 4, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0, 1, 0, 0, 1, 0, 0x20, 0x01, 4, 0}
	for _, c := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"SR", srPkt, true},
		{"RR then SR", append(slices.Clone(rrPkt), srPkt...), true},
		{"TWCC", tcc, false},
		{"RR", rrPkt, false},
		{"truncated before SR", append(slices.Clone(rrPkt[:len(rrPkt)-4]), srPkt...), false},
		{"empty", nil, false},
	} {
		if got := hasSenderReport(c.b); got != c.want {
			t.Errorf("%s: hasSenderReport = %v", c.name, got)
		}
	}
}

// TestRetransmitHoldoff: a NACK repeated within rtxHoldoff of the resend
// it asked for is ignored; after it, the packet is resent again.
func TestRetransmitHoldoff(t *testing.T) {
	up, d, w := benchDownTrack(t, 64)
	clock := time.Unix(1000, 0)
	d.sub.sfu.cfg.Now = func() time.Time { return clock }
	payload := make([]byte, 200)
	for seq := range uint16(10) {
		meta := media.PacketMeta{SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Keyframe: true}
		up.layers[0].cache.Put(payload, &meta)
		d.forward(0, seq)
	}
	out := d.rw.LastSequenceNumber() - 3
	resent := func() float64 { return counterValue(d.sub.sfu.m.retransmits) }
	written := w.n
	d.retransmit(out)
	if resent() != 1 || w.n == written {
		t.Fatalf("first NACK: %v resends", resent())
	}
	clock = clock.Add(10 * time.Millisecond)
	d.retransmit(out)
	if resent() != 1 {
		t.Errorf("NACK 10 ms after the resend resent again")
	}
	d.retransmit(out - 1) // another packet is not held back
	if resent() != 2 {
		t.Errorf("a different packet was not resent")
	}
	clock = clock.Add(time.Duration(rtxHoldoff))
	d.retransmit(out)
	if resent() != 3 {
		t.Errorf("NACK after the holdoff not answered: %v resends", resent())
	}
}

// TestSwitchRequestsKeyframe: when the allocator moves a subscriber to
// another simulcast layer, the publisher is asked for a key frame of that
// layer (RFC 4585 section 6.3.1 PLI with the layer's SSRC), since the
// switch waits for one; a request repeated within the keyframe interval is
// not sent.
func TestSwitchRequestsKeyframe(t *testing.T) {
	up, d, _ := benchDownTrack(t, 16)
	var mu sync.Mutex
	var sent []rtcp.Packet
	up.writeRTCP = func(p []rtcp.Packet) error {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, p...)
		return nil
	}
	up.layers[1] = &upLayer{index: 1, ssrc: 0x1111, cache: media.NewPacketCache(16),
		pli: media.NewThrottle(1e9), fwdPLI: media.NewThrottle(1e9), upNack: media.NewThrottle(1e9)}
	d.current.Store(0)
	d.setTarget(1)
	d.setTarget(1) // again, within the interval
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 1 {
		t.Fatalf("%d RTCP packets to the publisher, want 1", len(sent))
	}
	if p, ok := sent[0].(*rtcp.PictureLossIndication); !ok || p.MediaSSRC != 0x1111 {
		t.Errorf("sent %+v, want a PLI for SSRC 0x1111", sent[0])
	}
	if d.want.Load() != 0b11 {
		t.Errorf("receive mask %b, want the current and the target layer", d.want.Load())
	}
}

// TestFeedbackForOtherSSRCsIgnored: a compound RTCP packet naming several
// of a subscriber's tracks reaches each of their down tracks; each answers
// only the NACKs and key frame requests for its own SSRC, and the
// transport-wide feedback in it counts once.
func TestFeedbackForOtherSSRCsIgnored(t *testing.T) {
	up, d, _ := benchDownTrack(t, 64)
	var mu sync.Mutex
	plis := 0
	up.writeRTCP = func(p []rtcp.Packet) error {
		mu.Lock()
		defer mu.Unlock()
		plis += len(p)
		return nil
	}
	d.current.Store(0)
	own, other := d.ssrc, d.ssrc+1
	compound, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: 9, Reports: []rtcp.ReceptionReport{{SSRC: own}, {SSRC: other}}},
		&rtcp.TransportLayerNack{MediaSSRC: other, Nacks: []rtcp.NackPair{{PacketID: 5, LostPackets: 0xff}}},
		&rtcp.PictureLossIndication{MediaSSRC: other},
		&rtcp.TransportLayerNack{MediaSSRC: own, Nacks: []rtcp.NackPair{{PacketID: 7, LostPackets: 1}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.handleRTCP(compound)
	var seqs []uint16
	for len(d.sub.queue) > 0 {
		it := <-d.sub.queue
		if !it.rtx || it.dt != d {
			t.Errorf("queued %+v", it)
		}
		seqs = append(seqs, it.seq)
	}
	if !slices.Equal(seqs, []uint16{7, 8}) {
		t.Errorf("resends queued for %v, want [7 8] (the NACK for this SSRC only)", seqs)
	}
	mu.Lock()
	defer mu.Unlock()
	if plis != 0 {
		t.Errorf("a PLI for another SSRC asked the publisher for %d key frames", plis)
	}
}

// TestResendsKeepRoomForNewPackets: NACK resends are queued only while
// the subscriber's queue is under half full; new packets may use all of it.
func TestResendsKeepRoomForNewPackets(t *testing.T) {
	_, d, _ := benchDownTrack(t, 16)
	p := d.sub // queue of 16
	for i := range 7 {
		p.enqueue(sendItem{dt: d, seq: uint16(i)})
	}
	p.enqueueResend(sendItem{dt: d, seq: 100, rtx: true}) // 7 queued: accepted
	p.enqueueResend(sendItem{dt: d, seq: 101, rtx: true}) // 8 queued: refused
	for i := range 8 {
		p.enqueue(sendItem{dt: d, seq: uint16(200 + i)}) // new packets fill the rest
	}
	if len(p.queue) != 16 {
		t.Fatalf("%d queued, want 16", len(p.queue))
	}
	var resends []uint16
	for len(p.queue) > 0 {
		if it := <-p.queue; it.rtx {
			resends = append(resends, it.seq)
		}
	}
	if !slices.Equal(resends, []uint16{100}) {
		t.Errorf("resends queued %v, want [100]", resends)
	}
}

// TestKeyframeRequestsHeldNotLost: a key frame request the throttle holds
// back goes out once the throttle allows (a late subscriber still gets its
// key frame); a key frame that arrives answers it and lets the next request
// through after the short guard; subscribers' own PLIs stay within one per
// interval however many key frames arrive.
func TestKeyframeRequestsHeldNotLost(t *testing.T) {
	up, _, _ := benchDownTrack(t, 16)
	var clock atomic.Int64
	clock.Store(1e12)
	up.pub.sfu.cfg.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	plis := 0
	up.writeRTCP = func(p []rtcp.Packet) error { plis += len(p); return nil }
	l := up.layers[0]
	advance := func(d time.Duration) int64 { return clock.Add(int64(d)) }

	up.requestKeyframe(0) // first subscriber: sent
	advance(100 * time.Millisecond)
	up.requestKeyframe(0) // second subscriber, within the interval: held
	if plis != 1 || !l.pliPending.Load() {
		t.Fatalf("after two requests: %d PLIs sent, pending %v; want 1 and a held request", plis, l.pliPending.Load())
	}
	up.keyframeState(l, false, advance(400*time.Millisecond)) // still within the interval
	if plis != 1 {
		t.Fatalf("held request sent early: %d PLIs", plis)
	}
	up.keyframeState(l, false, advance(600*time.Millisecond)) // interval over: the held request goes
	if plis != 2 || l.pliPending.Load() {
		t.Fatalf("held request not sent once allowed: %d PLIs, pending %v", plis, l.pliPending.Load())
	}

	// A key frame answers the request; the next one may follow after the guard.
	up.keyframeState(l, true, advance(50*time.Millisecond))
	advance(time.Duration(keyframeGuard))
	up.requestKeyframe(0)
	if plis != 3 {
		t.Fatalf("request after an answered one and the guard: %d PLIs, want 3", plis)
	}

	// Subscribers' PLIs: at most one per interval even with key frames in between.
	before := plis
	for range 20 {
		up.keyframeState(l, true, advance(200*time.Millisecond))
		up.forwardKeyframeRequest(0)
	}
	if got := plis - before; got > 4 || got < 3 { // 20 × 200 ms = 4 s
		t.Errorf("%d subscriber PLIs in 4 s reached the publisher, want 3-4", got)
	}
}
