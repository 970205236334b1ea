package sfu

import (
	"encoding/binary"
	"sync/atomic"
	"time"
)

// Quality is how what a participant publishes arrives at the SFU over the
// last receiver-report interval (one second; RFC 3550 section 6.4.1, the
// report blocks the SFU sends the publisher): the signalling turns it
// into its protocol's connection quality (LiveKit's ConnectionQuality).
type Quality struct {
	// Streams is how many received streams were reported on; zero when
	// the participant publishes nothing (or nothing arrived yet), and
	// then the other fields say nothing.
	Streams int
	// Loss is the worst stream's fraction lost in the interval, 0 to 1
	// (after retransmissions that arrived in time count as received).
	Loss float64
	// Jitter is the worst stream's interarrival jitter (RFC 3550
	// section 6.4.1).
	Jitter time.Duration
	// At is when the interval ended.
	At time.Time
}

// noteBlock folds the report block just appended (24 bytes at b: SSRC,
// fraction lost and cumulative lost, highest sequence, jitter, LSR,
// DLSR) into q.
func (q *Quality) noteBlock(b []byte, clockRate uint32) {
	q.Streams++
	if loss := float64(b[4]) / 256; loss > q.Loss {
		q.Loss = loss
	}
	if clockRate > 0 {
		j := time.Duration(binary.BigEndian.Uint32(b[12:])) * time.Second / time.Duration(clockRate)
		q.Jitter = max(q.Jitter, j)
	}
}

// rxQuality hands a participant its PeerConnection's receive side.
type rxQuality struct {
	rx atomic.Pointer[rxFeedback]
}

// Quality reports how the participant's published media arrived over the
// last receiver-report interval.
func (p *Participant) Quality() Quality {
	if r := p.rxq.rx.Load(); r != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.quality
	}
	return Quality{}
}

// Quality reports each participant's Quality, by participant ID.
func (c *Conference) Quality() map[string]Quality {
	ps := c.members()
	out := make(map[string]Quality, len(ps))
	for _, p := range ps {
		out[p.id] = p.Quality()
	}
	return out
}
