package media

import (
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

// BandwidthEstimator is a send-side estimate of one transport's available
// bandwidth from transport-wide congestion control feedback
// (draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3). It follows
// the structure of Google Congestion Control (draft-ietf-rmcat-gcc-02) in a
// simplified form: a delay-based part (least-squares trend of one-way delay
// over each feedback, smoothed; a growing queue cuts the estimate to 85% of
// the acknowledged rate) and a loss-based part (over 10% loss cuts it, under
// 2% lets it grow 8% a second, never far above what is actually used).
//
// Sent is called per packet by the one goroutine that writes the transport
// and does not allocate; OnFeedback and Estimate may be called from others.
type BandwidthEstimator struct {
	min, max float64

	mu           sync.Mutex
	next         uint16
	hist         [historySize]sentPacket
	estimate     float64
	gradient     float64
	lastUpdate   int64
	lastDecrease int64
	ackStart     int64
	ackBytes     int64
	ackedRate    float64
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
	received, lost   int
	bytes            int64
	base             int64 // first send time, for numerical range
	baseOWD          int64
	sx, sy, sxy, sx2 float64
}

func (f *feedbackStats) add(sentAt, arrival int64, size int) {
	owd := arrival - sentAt
	if f.received == 0 {
		f.base, f.baseOWD = sentAt, owd
	}
	x := float64(sentAt-f.base) / 1e9
	y := float64(owd-f.baseOWD) / 1e9
	f.sx += x
	f.sy += y
	f.sxy += x * y
	f.sx2 += x * x
	f.received++
	f.bytes += int64(size)
}

// slope is the least-squares slope of one-way delay over send time: how
// many seconds of queueing delay each second of sending added.
func (f *feedbackStats) slope() (float64, bool) {
	n := float64(f.received)
	den := n*f.sx2 - f.sx*f.sx
	if f.received < 3 || den <= 1e-12 {
		return 0, false
	}
	return (n*f.sxy - f.sx*f.sy) / den, true
}

// OnFeedback folds one transport-wide feedback packet, received at now
// (unix nanoseconds), into the estimate.
func (e *BandwidthEstimator) OnFeedback(fb *rtcp.TransportLayerCC, now int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var st feedbackStats
	arrival := int64(fb.ReferenceTime) * 64e6 // 64 ms units (section 3.1)
	seq := fb.BaseSequenceNumber
	remaining := int(fb.PacketStatusCount)
	deltaIdx := 0
	symbol := func(s uint16) {
		sent := &e.hist[seq%historySize]
		known := sent.valid && sent.seq == seq
		switch s {
		case rtcp.TypeTCCPacketNotReceived:
			if known {
				st.lost++
			}
		case rtcp.TypeTCCPacketReceivedSmallDelta, rtcp.TypeTCCPacketReceivedLargeDelta:
			if deltaIdx < len(fb.RecvDeltas) && fb.RecvDeltas[deltaIdx] != nil {
				arrival += fb.RecvDeltas[deltaIdx].Delta * 1000 // microseconds
			}
			deltaIdx++
			if known {
				st.add(sent.at, arrival, int(sent.size))
			}
		}
		seq++
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
	e.updateLocked(&st, now)
}

func (e *BandwidthEstimator) updateLocked(st *feedbackStats, now int64) {
	total := st.received + st.lost
	if total == 0 {
		return
	}
	if e.ackStart == 0 {
		e.ackStart = now
	}
	e.ackBytes += st.bytes
	if el := now - e.ackStart; el >= 500e6 {
		e.ackedRate = float64(e.ackBytes*8) * 1e9 / float64(el)
		e.ackStart, e.ackBytes = now, 0
	}
	if s, ok := st.slope(); ok {
		e.gradient = 0.7*e.gradient + 0.3*s
	}
	dt := 0.0
	if e.lastUpdate != 0 {
		dt = min(float64(now-e.lastUpdate)/1e9, 1)
	}
	e.lastUpdate = now
	loss := float64(st.lost) / float64(total)
	switch {
	case e.gradient > 0.05: // overuse: the queue grows
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
		grown := e.estimate * (1 + 0.08*dt)
		if ceiling := 1.5*e.ackedRate + 100_000; grown > ceiling {
			grown = max(e.estimate, ceiling)
		}
		e.estimate = grown
	}
	e.clampLocked()
}
