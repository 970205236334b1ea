package sfu

import (
	"encoding/binary"
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// txStream is one stream the SFU sends (a down track), counted for its
// sender reports (RFC 3550 section 6.4.1), in place of pion's sender
// report interceptor, whose reports allocated several objects each.
type txStream struct {
	ssrc      uint32
	clockRate uint32

	// mu guards the fields below: the stream is written by a publisher's
	// receive goroutine and by the subscriber's send goroutine (resends).
	mu sync.Mutex
	// lastTS is the RTP timestamp of the newest frame sent and lastAt
	// when its first packet went (unix ns): an SR's RTP timestamp is
	// extrapolated from them.
	lastTS  uint32
	lastAt  int64
	lastSeq uint16
	packets uint32
	octets  uint32
}

// sent counts one packet written at now.
func (s *txStream) sent(h *rtp.Header, payload []byte, now int64) {
	s.mu.Lock()
	if d := h.SequenceNumber - s.lastSeq; s.packets == 0 || (d > 0 && d < 1<<15) {
		// In order (a resend does not move the clock mapping).
		s.lastSeq = h.SequenceNumber
		if s.packets == 0 || h.Timestamp != s.lastTS {
			s.lastTS, s.lastAt = h.Timestamp, now
		}
	}
	s.packets++
	s.octets += uint32(len(payload))
	s.mu.Unlock()
}

// appendSenderReport appends an SR without report blocks for s at now to
// dst; nothing before the first packet (RFC 3550 section 6.4: a source
// that has not sent is no sender).
func (s *txStream) appendSenderReport(dst []byte, now int64) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.packets == 0 {
		return dst
	}
	rtpTime := s.lastTS + uint32((now-s.lastAt)*int64(s.clockRate)/1e9)
	dst = append(dst, 0x80, 200, 0, 6)
	dst = binary.BigEndian.AppendUint32(dst, s.ssrc)
	dst = binary.BigEndian.AppendUint64(dst, toNTP(now))
	dst = binary.BigEndian.AppendUint32(dst, rtpTime)
	dst = binary.BigEndian.AppendUint32(dst, s.packets)
	return binary.BigEndian.AppendUint32(dst, s.octets)
}

// ntpEpochOffset is the seconds from 1900 (NTP's epoch) to 1970.
const ntpEpochOffset = 2208988800

// toNTP converts unix ns to a 64-bit NTP timestamp (RFC 3550 section 4:
// seconds since 1900 in 32.32 fixed point).
func toNTP(ns int64) uint64 {
	sec := uint64(ns/1e9) + ntpEpochOffset
	frac := uint64(ns%1e9) << 32 / 1e9
	return sec<<32 | frac
}

// BindLocalStream implements interceptor.Interceptor: the returned writer
// counts what is sent on the stream.
func (r *rxFeedback) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	st := &txStream{ssrc: info.SSRC, clockRate: info.ClockRate}
	r.mu.Lock()
	r.local[info.SSRC] = st
	r.mu.Unlock()
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		n, err := writer.Write(h, payload, a)
		if err == nil {
			st.sent(h, payload, r.now().UnixNano())
		}
		return n, err
	})
}

// UnbindLocalStream implements interceptor.Interceptor.
func (r *rxFeedback) UnbindLocalStream(info *interceptor.StreamInfo) {
	r.mu.Lock()
	delete(r.local, info.SSRC)
	r.mu.Unlock()
}
