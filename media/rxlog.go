package media

import "encoding/binary"

// This file holds the receive side's per-packet bookkeeping for the
// feedback a receiver owes its sender: which packets are missing (generic
// NACK, RFC 4585 section 6.2.1) and the reception statistics of receiver
// reports (RFC 3550 section 6.4.2, appendices A.3 and A.8). Every method
// runs without allocating; the caller serialises access.

// RTPFields are the RTP header fields (RFC 3550 section 5.1) the receive
// side's feedback needs, read by ParseRTPFields.
type RTPFields struct {
	SSRC           uint32
	SequenceNumber uint16
	Timestamp      uint32
	// TransportSeq is the transport-wide sequence number
	// (draft-holmer-rmcat-transport-wide-cc-extensions-01 section 2) when
	// HasTransportSeq.
	TransportSeq    uint16
	HasTransportSeq bool
}

// ParseRTPFields reads the fixed header of an RTP packet and, when tccID is
// not 0, the transport-wide sequence number in header extension tccID
// (one-byte or two-byte form, RFC 8285 sections 4.2 and 4.3), without
// allocating. It reports false for a packet too short for its header.
func ParseRTPFields(pkt []byte, tccID uint8, f *RTPFields) bool {
	if len(pkt) < 12 || pkt[0]>>6 != 2 {
		return false
	}
	*f = RTPFields{
		SequenceNumber: binary.BigEndian.Uint16(pkt[2:]),
		Timestamp:      binary.BigEndian.Uint32(pkt[4:]),
		SSRC:           binary.BigEndian.Uint32(pkt[8:]),
	}
	off := 12 + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 == 0 || tccID == 0 {
		return len(pkt) >= off
	}
	if len(pkt) < off+4 {
		return false
	}
	profile := binary.BigEndian.Uint16(pkt[off:])
	end := off + 4 + 4*int(binary.BigEndian.Uint16(pkt[off+2:]))
	if end > len(pkt) {
		return false
	}
	ext := pkt[off+4 : end]
	switch {
	case profile == 0xBEDE: // one-byte headers
		for len(ext) > 0 {
			id, l := ext[0]>>4, int(ext[0]&0x0f)+1
			if id == 0 { // padding
				ext = ext[1:]
				continue
			}
			if id == 15 || len(ext) < 1+l {
				return true
			}
			if id == tccID && l >= 2 {
				f.TransportSeq, f.HasTransportSeq = binary.BigEndian.Uint16(ext[1:]), true
				return true
			}
			ext = ext[1+l:]
		}
	case profile&0xFFF0 == 0x1000: // two-byte headers
		for len(ext) > 0 {
			if ext[0] == 0 {
				ext = ext[1:]
				continue
			}
			if len(ext) < 2 || len(ext) < 2+int(ext[1]) {
				return true
			}
			id, l := ext[0], int(ext[1])
			if id == tccID && l >= 2 {
				f.TransportSeq, f.HasTransportSeq = binary.BigEndian.Uint16(ext[2:]), true
				return true
			}
			ext = ext[2+l:]
		}
	}
	return true
}

// nackWindow is how many sequence numbers behind the highest received a
// ReceiveLog still asks for (as pion's NACK generator's default log).
const nackWindow = 512

// ReceiveLog remembers which sequence numbers of one RTP stream arrived,
// to ask for the missing ones with generic NACKs (RFC 4585 section 6.2.1).
// The zero value is ready.
type ReceiveLog struct {
	started bool
	// highest is the highest sequence number received, extended past
	// wrap-around; consecutive is the highest below which every packet
	// (in the window) arrived.
	highest, consecutive int64
	bits                 [nackWindow / 64]uint64
}

func (r *ReceiveLog) set(ext int64, on bool) {
	i := uint64(ext) % nackWindow
	if on {
		r.bits[i/64] |= 1 << (i % 64)
	} else {
		r.bits[i/64] &^= 1 << (i % 64)
	}
}

func (r *ReceiveLog) has(ext int64) bool {
	i := uint64(ext) % nackWindow
	return r.bits[i/64]&(1<<(i%64)) != 0
}

// Add records that seq arrived.
func (r *ReceiveLog) Add(seq uint16) {
	if !r.started {
		r.started = true
		r.highest, r.consecutive = int64(seq), int64(seq)
		r.set(int64(seq), true)
		return
	}
	ext := unwrapSeq(seq, r.highest)
	switch {
	case ext <= r.highest-nackWindow:
		return // too old to matter
	case ext > r.highest:
		if ext-r.highest >= nackWindow {
			// A jump past the window: start over from here.
			r.bits = [nackWindow / 64]uint64{}
			r.highest, r.consecutive = ext, ext
			r.set(ext, true)
			return
		}
		for s := r.highest + 1; s < ext; s++ {
			r.set(s, false)
		}
		r.highest = ext
	}
	r.set(ext, true)
	if r.consecutive < r.highest-nackWindow {
		r.consecutive = r.highest - nackWindow // older ones are given up
	}
	for r.consecutive < r.highest && r.has(r.consecutive+1) {
		r.consecutive++
	}
}

// AppendMissing appends the sequence numbers missing below the highest
// received, oldest first, at most max of them.
func (r *ReceiveLog) AppendMissing(dst []uint16, max int) []uint16 {
	if !r.started {
		return dst
	}
	for s := r.consecutive + 1; s < r.highest && max > 0; s++ {
		if !r.has(s) {
			dst = append(dst, uint16(s))
			max--
		}
	}
	return dst
}

// unwrapSeq extends a 16-bit sequence number to the one nearest ref.
func unwrapSeq(seq uint16, ref int64) int64 {
	d := int64(int16(seq - uint16(ref)))
	return ref + d
}

// AppendNACK appends a generic NACK (RFC 4585 section 6.2.1: PT 205, FMT 1)
// from senderSSRC for mediaSSRC asking for seqs (ascending, as
// ReceiveLog.AppendMissing gives them) to dst.
func AppendNACK(dst []byte, senderSSRC, mediaSSRC uint32, seqs []uint16) []byte {
	start := len(dst)
	dst = append(dst, 0x80|1, 205, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, senderSSRC)
	dst = binary.BigEndian.AppendUint32(dst, mediaSSRC)
	for i := 0; i < len(seqs); {
		pid := seqs[i]
		var blp uint16
		i++
		for i < len(seqs) && seqs[i]-pid >= 1 && seqs[i]-pid <= 16 {
			blp |= 1 << (seqs[i] - pid - 1)
			i++
		}
		dst = binary.BigEndian.AppendUint16(dst, pid)
		dst = binary.BigEndian.AppendUint16(dst, blp)
	}
	binary.BigEndian.PutUint16(dst[start+2:], uint16((len(dst)-start)/4-1))
	return dst
}

// ReceptionStats keeps one RTP stream's reception statistics for receiver
// report blocks (RFC 3550 section 6.4.1; appendix A.3 for loss, A.8 for
// jitter). The zero value is ready once ClockRate is set.
type ReceptionStats struct {
	// ClockRate is the stream's RTP clock rate (Hz), for the jitter.
	ClockRate uint32

	started        bool
	baseSeq        int64
	highest        int64
	received       uint32
	expectedPrior  int64
	receivedPrior  uint32
	jitter         float64
	lastTransit    int64
	haveTransit    bool
	lastSR         uint32 // middle 32 bits of the last sender report's NTP time
	lastSRAt       int64  // when it arrived, unix ns
	haveSenderInfo bool
}

// Update records a received packet with sequence number seq and RTP
// timestamp ts that arrived at now (unix ns).
func (s *ReceptionStats) Update(seq uint16, ts uint32, now int64) {
	if !s.started {
		s.started = true
		s.baseSeq, s.highest = int64(seq), int64(seq)
	} else if ext := unwrapSeq(seq, s.highest); ext > s.highest {
		s.highest = ext
	}
	s.received++
	if s.ClockRate == 0 {
		return
	}
	// Transit time in RTP clock units (appendix A.8).
	arrival := now / 1000 * int64(s.ClockRate) / 1_000_000
	transit := arrival - int64(ts)
	if s.haveTransit {
		d := transit - s.lastTransit
		// RTP timestamps wrap at 2^32.
		d = int64(int32(d))
		if d < 0 {
			d = -d
		}
		s.jitter += (float64(d) - s.jitter) / 16
	}
	s.lastTransit, s.haveTransit = transit, true
}

// OnSenderReport records a sender report's NTP timestamp (RFC 3550
// section 6.4.1) that arrived at now, for the report block's LSR and DLSR.
func (s *ReceptionStats) OnSenderReport(ntp uint64, now int64) {
	s.lastSR, s.lastSRAt, s.haveSenderInfo = uint32(ntp>>16), now, true
}

// AppendReportBlock appends the 24-byte report block (RFC 3550 section
// 6.4.1) for ssrc at now to dst, and starts the next reporting interval.
// It appends nothing before the first packet.
func (s *ReceptionStats) AppendReportBlock(dst []byte, ssrc uint32, now int64) ([]byte, bool) {
	if !s.started {
		return dst, false
	}
	expected := s.highest - s.baseSeq + 1
	lost := expected - int64(s.received)
	lost = min(max(lost, -0x800000), 0x7FFFFF)
	expInterval := expected - s.expectedPrior
	recvInterval := int64(s.received - s.receivedPrior)
	s.expectedPrior, s.receivedPrior = expected, s.received
	var fraction uint8
	if lostInterval := expInterval - recvInterval; expInterval > 0 && lostInterval > 0 {
		fraction = uint8(lostInterval << 8 / expInterval)
	}
	dst = binary.BigEndian.AppendUint32(dst, ssrc)
	dst = binary.BigEndian.AppendUint32(dst, uint32(fraction)<<24|uint32(lost)&0xFFFFFF)
	dst = binary.BigEndian.AppendUint32(dst, uint32(s.highest))
	dst = binary.BigEndian.AppendUint32(dst, uint32(s.jitter))
	var lsr, dlsr uint32
	if s.haveSenderInfo {
		lsr = s.lastSR
		// DLSR in units of 1/65536 s.
		dlsr = uint32((now - s.lastSRAt) * 65536 / 1e9)
	}
	dst = binary.BigEndian.AppendUint32(dst, lsr)
	dst = binary.BigEndian.AppendUint32(dst, dlsr)
	return dst, true
}

// ForEachSenderReport calls fn with the SSRC and NTP timestamp of every
// sender report (RFC 3550 section 6.4.1, PT 200) in a compound RTCP
// packet, without allocating. It stops at the first malformed packet.
func ForEachSenderReport(b []byte, fn func(ssrc uint32, ntp uint64)) {
	for len(b) >= 4 && b[0]>>6 == 2 {
		size := (int(binary.BigEndian.Uint16(b[2:])) + 1) * 4
		if size > len(b) {
			return
		}
		if b[1] == 200 && size >= 16 {
			fn(binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint64(b[8:]))
		}
		b = b[size:]
	}
}
