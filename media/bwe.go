package media

import (
	"encoding/binary"
	"sync"

	"github.com/pion/rtcp"
)

// TransportCCURI is the SDP extmap URI of the transport-wide sequence
// number header extension (draft-holmer-rmcat-transport-wide-cc-extensions-01
// section 2) that send-side bandwidth estimation needs.
const TransportCCURI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

// EstimatorConfig bounds a BandwidthEstimator. Zero fields take defaults.
type EstimatorConfig struct {
	// Initial is the estimate before any feedback, bits/s. Default 1 Mbit/s.
	Initial int
	// Min is the floor of the estimate, bits/s. Default 100 kbit/s.
	Min int
	// Max is the ceiling of the estimate, bits/s. Default 10 Mbit/s.
	Max int
}

type sentPacket struct {
	valid bool
	seq   uint16
	size  uint16
	at    int64
}

const historySize = 1 << 12

// decreaseInterval is the least time between two decreases of the
// estimate, nanoseconds.
const decreaseInterval = int64(300e6)

// BandwidthEstimator is a send-side estimate of one transport's available
// bandwidth from transport-wide congestion control feedback
// (draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3). It follows
// the structure of Google Congestion Control (draft-ietf-rmcat-gcc-02) in a
// simplified form: a delay-based part (least-squares trend of one-way delay
// over each feedback, smoothed; a growing queue cuts the estimate to 85% of
// the acknowledged rate) and a loss-based part (over 10% loss cuts it by
// half the loss ratio, under 2% lets it grow 8% a second up to twice the
// acknowledged rate plus 300 kbit/s: there is no padding probe, so growth
// must reach somewhat past what is used for a subscriber to move up a
// layer). One decrease per 300 ms at most, so that one
// congestion event reported by several feedback packets counts once.
//
// Sent is called per packet by the one goroutine that writes the transport
// and does not allocate; OnFeedback and Estimate may be called from others.
type BandwidthEstimator struct {
	min, max float64

	mu           sync.Mutex
	next         uint16
	hist         [historySize]sentPacket
	estimate     float64
	samples      [trendWindow]delaySample
	nextSample   int
	nSamples     int
	lastUpdate   int64
	lastDecrease int64
	// threshold is the adaptive overuse threshold on the delay growth
	// over the trend window, ns; thresholdAt when it was last adapted.
	threshold   float64
	thresholdAt int64
	// overUses counts consecutive feedbacks whose delay growth was
	// over the threshold.
	overUses  int
	ackFirst  int64 // start of the acknowledged-rate window, remote clock
	ackBytes  int64
	ackedRate float64
	ackedAt   int64 // when ackedRate was measured, local clock
	// lastFB identifies the last raw feedback folded (feedback packet
	// count and base sequence number), fbSeen whether there was one.
	lastFB uint32
	fbSeen bool
}

// NewBandwidthEstimator returns an estimator with cfg's bounds.
func NewBandwidthEstimator(cfg EstimatorConfig) *BandwidthEstimator {
	if cfg.Initial <= 0 {
		cfg.Initial = 1_000_000
	}
	if cfg.Min <= 0 {
		cfg.Min = 100_000
	}
	if cfg.Max <= 0 {
		cfg.Max = 10_000_000
	}
	if cfg.Max < cfg.Min {
		cfg.Max = cfg.Min
	}
	e := &BandwidthEstimator{min: float64(cfg.Min), max: float64(cfg.Max), estimate: float64(cfg.Initial)}
	e.clampLocked()
	return e
}

// Sent assigns the next transport-wide sequence number to a packet of size
// bytes sent at now (unix nanoseconds) and remembers it for feedback.
func (e *BandwidthEstimator) Sent(size int, now int64) uint16 {
	e.mu.Lock()
	seq := e.next
	e.next++
	e.hist[seq%historySize] = sentPacket{valid: true, seq: seq, size: uint16(min(size, 65535)), at: now}
	e.mu.Unlock()
	return seq
}

// Estimate returns the current estimate in bits per second.
func (e *BandwidthEstimator) Estimate() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return int(e.estimate)
}

func (e *BandwidthEstimator) clampLocked() {
	e.estimate = min(max(e.estimate, e.min), e.max)
}

// feedbackStats accumulates one feedback report.
type feedbackStats struct {
	received, lost int
	bytes          int64
	firstArrival   int64 // receiver's clock
	lastArrival    int64
}

// trendWindow is how many recent packets the delay trend is fitted over.
const trendWindow = 64

// delaySample is one acknowledged packet: when it was sent (local clock)
// and its one-way delay up to an unknown constant (arrival on the
// receiver's clock minus send time).
type delaySample struct{ sent, owd int64 }

// trend fits a least-squares line to the one-way delay of the last
// trendWindow packets (draft-ietf-rmcat-gcc-02 section 5.3 uses a trendline
// filter in the same way). It reports the slope (seconds of queueing delay
// added per second of sending) and the span of send times it covers.
func (e *BandwidthEstimator) trendLocked() (slope float64, span int64, ok bool) {
	n := min(e.nSamples, trendWindow)
	if n < 10 {
		return 0, 0, false
	}
	first := e.samples[(e.nextSample-n+trendWindow)%trendWindow]
	last := e.samples[(e.nextSample-1+trendWindow)%trendWindow]
	span = last.sent - first.sent
	var sx, sy, sxy, sx2 float64
	for k := 0; k < n; k++ {
		smp := e.samples[(e.nextSample-n+k+trendWindow)%trendWindow]
		x := float64(smp.sent-first.sent) / 1e9
		y := float64(smp.owd-first.owd) / 1e9
		sx, sy, sxy, sx2 = sx+x, sy+y, sxy+x*y, sx2+x*x
	}
	fn := float64(n)
	den := fn*sx2 - sx*sx
	if den <= 1e-12 {
		return 0, span, false
	}
	return (fn*sxy - sx*sy) / den, span, true
}

// OnFeedback folds one transport-wide feedback packet, received at now
// (unix nanoseconds), into the estimate.
func (e *BandwidthEstimator) OnFeedback(fb *rtcp.TransportLayerCC, now int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := feedbackWalk{e: e, seq: fb.BaseSequenceNumber, arrival: int64(fb.ReferenceTime) * 64e6}
	remaining := int(fb.PacketStatusCount)
	deltaIdx := 0
	symbol := func(s uint16) {
		var delta int64
		if s == rtcp.TypeTCCPacketReceivedSmallDelta || s == rtcp.TypeTCCPacketReceivedLargeDelta {
			if deltaIdx < len(fb.RecvDeltas) && fb.RecvDeltas[deltaIdx] != nil {
				delta = fb.RecvDeltas[deltaIdx].Delta
			}
			deltaIdx++
		}
		w.symbol(s, delta)
		remaining--
	}
	for _, c := range fb.PacketChunks {
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for i := 0; i < int(c.RunLength) && remaining > 0; i++ {
				symbol(c.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			for _, s := range c.SymbolList {
				if remaining <= 0 {
					break
				}
				symbol(s)
			}
		}
	}
	e.updateLocked(&w.st, now)
}

// feedbackWalk folds the packet status symbols of one feedback packet, in
// order, into e's history and delay samples. e.mu is held.
type feedbackWalk struct {
	e       *BandwidthEstimator
	st      feedbackStats
	seq     uint16
	arrival int64 // receiver's clock, ns
}

// symbol takes the status of the next sequence number; deltaUS is its
// receive delta in microseconds (received packets only).
func (w *feedbackWalk) symbol(s uint16, deltaUS int64) {
	e := w.e
	sent := &e.hist[w.seq%historySize]
	known := sent.valid && sent.seq == w.seq
	switch s {
	case rtcp.TypeTCCPacketNotReceived:
		if known {
			w.st.lost++
		}
	case rtcp.TypeTCCPacketReceivedSmallDelta, rtcp.TypeTCCPacketReceivedLargeDelta:
		w.arrival += deltaUS * 1000
		if known {
			if w.st.received == 0 {
				w.st.firstArrival = w.arrival
			}
			w.st.lastArrival = max(w.st.lastArrival, w.arrival)
			w.st.received++
			w.st.bytes += int64(sent.size)
			e.samples[e.nextSample] = delaySample{sent: sent.at, owd: w.arrival - sent.at}
			e.nextSample = (e.nextSample + 1) % trendWindow
			e.nSamples++
		}
	}
	w.seq++
}

// OnFeedbackFCI is OnFeedback on the raw feedback control information of
// a transport-wide feedback packet (the bytes after the media source SSRC,
// draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3.1), as
// FeedbackPackets yields it. It does not allocate, so that the feedback
// path costs nothing per acknowledged packet. A feedback packet equal in
// feedback packet count and base sequence number to the one before is a
// copy and is ignored. A malformed FCI changes nothing and returns
// ErrShortPacket.
func (e *BandwidthEstimator) OnFeedbackFCI(fci []byte, now int64) error {
	if len(fci) < 8 {
		return ErrShortPacket
	}
	base := binary.BigEndian.Uint16(fci)
	count := int(binary.BigEndian.Uint16(fci[2:]))
	ref := int64(fci[4])<<16 | int64(fci[5])<<8 | int64(fci[6])
	// First pass: the chunks cover count symbols; the deltas follow them
	// and must all be there.
	off, n, deltaBytes := 8, 0, 0
	for n < count {
		if off+2 > len(fci) {
			return ErrShortPacket
		}
		c := binary.BigEndian.Uint16(fci[off:])
		off += 2
		n, deltaBytes = chunkSymbols(c, n, count, deltaBytes, nil)
	}
	if off+deltaBytes > len(fci) {
		return ErrShortPacket
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// The same feedback packet may be handed over more than once (an RTP
	// stack delivers a compound RTCP packet to each sender it names):
	// fold it once. The feedback packet count (section 3.1) tells them
	// apart.
	id := uint32(fci[7])<<16 | uint32(base)
	if e.fbSeen && id == e.lastFB {
		return nil
	}
	e.fbSeen, e.lastFB = true, id
	w := feedbackWalk{e: e, seq: base, arrival: ref * 64e6}
	deltas := fci[off:]
	n = 0
	for c := 8; n < count; c += 2 {
		n, _ = chunkSymbols(binary.BigEndian.Uint16(fci[c:]), n, count, 0, func(s uint16) {
			var delta int64
			switch s {
			case rtcp.TypeTCCPacketReceivedSmallDelta:
				delta = int64(deltas[0]) * 250
				deltas = deltas[1:]
			case rtcp.TypeTCCPacketReceivedLargeDelta:
				delta = int64(int16(binary.BigEndian.Uint16(deltas))) * 250
				deltas = deltas[2:]
			}
			w.symbol(s, delta)
		})
	}
	e.updateLocked(&w.st, now)
	return nil
}

// chunkSymbols walks the symbols of one packet status chunk (section
// 3.1.2 run length, 3.1.3 status vector), stopping at count symbols in
// all: n is the count before the chunk, and is returned updated with the
// receive delta bytes the symbols need. fn, if not nil, gets each symbol.
func chunkSymbols(c uint16, n, count, deltaBytes int, fn func(uint16)) (int, int) {
	deltaSize := func(s uint16) int {
		switch s {
		case rtcp.TypeTCCPacketReceivedSmallDelta:
			return 1
		case rtcp.TypeTCCPacketReceivedLargeDelta:
			return 2
		}
		return 0
	}
	take := func(s uint16) {
		deltaBytes += deltaSize(s)
		if fn != nil {
			fn(s)
		}
		n++
	}
	switch {
	case c&0x8000 == 0: // run length: symbol, 13-bit length
		s := (c >> 13) & 3
		for i := 0; i < int(c&0x1fff) && n < count; i++ {
			take(s)
		}
	case c&0x4000 == 0: // status vector of fourteen 1-bit symbols
		for i := 13; i >= 0 && n < count; i-- {
			take((c >> i) & 1)
		}
	default: // status vector of seven 2-bit symbols
		for i := 6; i >= 0 && n < count; i-- {
			take((c >> (2 * i)) & 3)
		}
	}
	return n, deltaBytes
}

func (e *BandwidthEstimator) updateLocked(st *feedbackStats, now int64) {
	total := st.received + st.lost
	if total == 0 {
		return
	}
	// The acknowledged rate is measured on the receiver's clock (arrival
	// times), over windows of at least 500 ms: when a queue builds up it is
	// what the path delivers, not what was sent.
	if st.received > 0 {
		if e.ackBytes == 0 && e.ackFirst == 0 {
			e.ackFirst = st.firstArrival
		}
		e.ackBytes += st.bytes
		if span := st.lastArrival - e.ackFirst; span >= 500e6 {
			e.ackedRate = float64(e.ackBytes*8) * 1e9 / float64(span)
			e.ackedAt = now
			e.ackFirst, e.ackBytes = st.lastArrival, 0
		} else if span < 0 {
			e.ackFirst, e.ackBytes = st.firstArrival, st.bytes // clock wrapped
		}
	}
	// Overuse: over the last packets (at least 100 ms of sending) the
	// delay grew by more than 5% of the time and by more than 10 ms.
	overuse := false
	if slope, span, ok := e.trendLocked(); ok && span >= 100e6 {
		m := slope * float64(span)
		// Over the threshold in two feedbacks in a row: one late
		// burst of packets is not a queue (libwebrtc's overuse detector
		// likewise waits for a second sample).
		if slope > 0.05 && m > e.thresholdLocked() {
			e.overUses++
		} else {
			e.overUses = 0
		}
		overuse = e.overUses >= 2
		e.adaptThresholdLocked(m, now)
	}
	dt := 0.0
	if e.lastUpdate != 0 {
		dt = min(float64(now-e.lastUpdate)/1e9, 1)
	}
	e.lastUpdate = now
	loss := float64(st.lost) / float64(total)
	// One congestion event shows up in several feedback packets: decrease
	// at most once per decreaseInterval (GCC waits about an RTT too).
	canDecrease := now-e.lastDecrease >= decreaseInterval
	switch {
	case !canDecrease && (overuse || loss > 0.10):
	case overuse: // the queue grows
		target := 0.85 * e.estimate
		if e.ackedRate > 0 {
			target = 0.85 * e.ackedRate
		}
		if target < e.estimate {
			e.estimate = target
			e.lastDecrease = now
		}
	case loss > 0.10:
		e.estimate *= 1 - 0.5*loss
		e.lastDecrease = now
	case loss < 0.02 && now-e.lastDecrease > 1e9:
		e.growLocked(dt, now)
	}
	e.clampLocked()
}

// Adaptive overuse threshold (draft-ietf-rmcat-gcc-02 section 5.4): the
// threshold follows the size of the delay swings seen lately, quickly up
// (k_u) and slowly down (k_d), so that a delay that jitters by tens of
// milliseconds because a busy machine reads and sends packets late is not
// taken for a growing queue, while a growth beyond the usual swing still
// is. Bounds and gains are the draft's, the floor is the former fixed
// threshold.
const (
	thresholdMin  = 10e6  // ns
	thresholdMax  = 600e6 // ns
	thresholdUp   = 0.01  // k_u, per ms
	thresholdDown = 0.00018
)

func (e *BandwidthEstimator) thresholdLocked() float64 {
	return max(e.threshold, thresholdMin)
}

// adaptThresholdLocked moves the threshold towards |m| (ns), the delay
// growth over the trend window just measured.
func (e *BandwidthEstimator) adaptThresholdLocked(m float64, now int64) {
	g := e.thresholdLocked()
	if m < 0 {
		m = -m
	}
	k := thresholdDown
	if m > g {
		k = thresholdUp
	}
	dtMs := 100.0 // the draft caps the step at 100 ms
	if e.thresholdAt != 0 {
		dtMs = min(float64(now-e.thresholdAt)/1e6, 100)
	}
	e.thresholdAt = now
	// The draft adapts per packet group (a few ms); we adapt per
	// feedback (up to 100 ms), where dtMs*k_u would reach |m| in one
	// step and absorb a steadily growing queue before the second
	// over-threshold feedback confirms it: go at most half the way.
	e.threshold = min(max(g+min(dtMs*k, 0.5)*(m-g), thresholdMin), thresholdMax)
}

// growLocked raises the estimate by 8% per second of dt. Growth stops
// about one simulcast step above what is used: there is no probing, so the
// estimate has to be allowed somewhat above the acknowledged rate for a
// subscriber to move up a layer.
func (e *BandwidthEstimator) growLocked(dt float64, now int64) {
	acked := e.ackedRate
	if now-e.ackedAt > 2e9 {
		acked = 0 // stale: little or nothing was sent lately
	}
	grown := e.estimate * (1 + 0.08*dt)
	if ceiling := 2*acked + 300_000; grown > ceiling {
		grown = max(e.estimate, ceiling)
	}
	e.estimate = grown
}

// Update lets the estimate recover while no feedback arrives because
// (nearly) nothing is sent, for example while every video track is paused
// after a congestion: without it a paused subscriber would stay paused.
// Call it periodically; it does nothing before the first feedback.
func (e *BandwidthEstimator) Update(now int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lastUpdate == 0 || now-e.lastUpdate < 1e9 || now-e.lastDecrease < 1e9 {
		return
	}
	e.growLocked(min(float64(now-e.lastUpdate)/1e9, 1), now)
	e.lastUpdate = now
	e.clampLocked()
}
