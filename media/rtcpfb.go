package media

import "encoding/binary"

// FeedbackType is the kind of an RTCP packet that the forwarding path acts
// on.
type FeedbackType uint8

// The feedback types FeedbackPackets reports; everything else (reports,
// SDES, BYE, other feedback) is FeedbackOther.
const (
	FeedbackOther FeedbackType = iota
	// FeedbackNACK is a generic NACK (RFC 4585 section 6.2.1: PT 205,
	// FMT 1); see ForEachNACK.
	FeedbackNACK
	// FeedbackTWCC is transport-wide congestion control feedback
	// (draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3.1:
	// PT 205, FMT 15); see BandwidthEstimator.OnFeedbackFCI.
	FeedbackTWCC
	// FeedbackPLI is a picture loss indication (RFC 4585 section 6.3.1:
	// PT 206, FMT 1).
	FeedbackPLI
	// FeedbackFIR is a full intra request (RFC 5104 section 4.3.1: PT 206,
	// FMT 4).
	FeedbackFIR
)

// NextFeedback splits the first RTCP packet off a compound packet (RFC
// 3550 section 6.1) without allocating. For feedback packets (RFC 4585
// section 6.1) it returns the media source SSRC and the feedback control
// information (fci, padding removed); rest is the remainder of the
// compound packet. It returns ErrShortPacket for a packet whose header is
// not RTCP version 2 or whose length field runs past b; the caller should
// drop the rest then.
func NextFeedback(b []byte) (typ FeedbackType, mediaSSRC uint32, fci, rest []byte, err error) {
	if len(b) < 4 || b[0]>>6 != 2 {
		return FeedbackOther, 0, nil, nil, ErrShortPacket
	}
	size := (int(binary.BigEndian.Uint16(b[2:])) + 1) * 4
	if size > len(b) {
		return FeedbackOther, 0, nil, nil, ErrShortPacket
	}
	pkt, rest := b[:size], b[size:]
	if b[0]&0x20 != 0 { // padding: the last byte counts it (section 6.4.1)
		pad := int(pkt[size-1])
		if pad == 0 || pad > size-4 {
			return FeedbackOther, 0, nil, nil, ErrShortPacket
		}
		pkt = pkt[:size-pad]
	}
	fmtField, pt := b[0]&0x1f, b[1]
	switch {
	case pt == 205 && fmtField == 1:
		typ = FeedbackNACK
	case pt == 205 && fmtField == 15:
		typ = FeedbackTWCC
	case pt == 206 && fmtField == 1:
		typ = FeedbackPLI
	case pt == 206 && fmtField == 4:
		typ = FeedbackFIR
	default:
		return FeedbackOther, 0, nil, rest, nil
	}
	if len(pkt) < 12 {
		return FeedbackOther, 0, nil, nil, ErrShortPacket
	}
	return typ, binary.BigEndian.Uint32(pkt[8:]), pkt[12:], rest, nil
}

// ForEachNACK calls fn with every sequence number a generic NACK's FCI
// asks for (RFC 4585 section 6.2.1: a packet ID and a bitmask of the 16
// following), in order. A trailing partial entry is ignored.
func ForEachNACK(fci []byte, fn func(seq uint16)) {
	for ; len(fci) >= 4; fci = fci[4:] {
		pid := binary.BigEndian.Uint16(fci)
		blp := binary.BigEndian.Uint16(fci[2:])
		fn(pid)
		for i := uint16(0); i < 16; i++ {
			if blp&(1<<i) != 0 {
				fn(pid + i + 1)
			}
		}
	}
}
