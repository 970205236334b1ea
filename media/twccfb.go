package media

import "encoding/binary"

// twccRing is how many transport-wide sequence numbers a TWCCRecorder holds
// between two feedback packets (a power of two).
const twccRing = 4096

// twccMaxPerFeedback bounds the packets one feedback packet reports, so
// that it stays well under an MTU (at most 2 bytes of delta and 2/7 bytes
// of chunk per packet).
const twccMaxPerFeedback = 400

// TWCCRecorder records the arrival times of received packets by their
// transport-wide sequence number and writes the transport-wide congestion
// control feedback for them
// (draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3.1), the
// input of the sender's bandwidth estimate. It does not allocate. The zero
// value is ready; the caller serialises access.
type TWCCRecorder struct {
	started bool
	// next is the first sequence number (extended) not yet reported;
	// highest the highest received.
	next, highest int64
	// arrival holds arrival time + 1 (unix µs) by sequence number; 0 is
	// "not received".
	arrival [twccRing]int64
	fbCount uint8
}

// Record notes that the packet with transport-wide sequence number seq
// arrived at now (unix ns). Packets older than the last feedback are
// ignored.
func (r *TWCCRecorder) Record(seq uint16, now int64) {
	if !r.started {
		r.started = true
		r.next, r.highest = int64(seq), int64(seq)
	}
	ext := unwrapSeq(seq, r.highest)
	if ext < r.next {
		return
	}
	if ext-r.next >= twccRing {
		// Too far ahead to keep the unreported ones: drop the oldest.
		newNext := ext - twccRing + 1
		for s := r.next; s < newNext && s <= r.highest; s++ {
			r.arrival[s%twccRing] = 0
		}
		r.next = newNext
	}
	if ext > r.highest {
		r.highest = ext
	}
	r.arrival[ext%twccRing] = now/1000 + 1
}

// Pending reports whether packets wait to be reported.
func (r *TWCCRecorder) Pending() bool { return r.started && r.next <= r.highest }

// AppendFeedback appends one feedback packet (RTPFB, PT 205, FMT 15) from
// senderSSRC about mediaSSRC for the packets received since the last one
// to dst, at most twccMaxPerFeedback of them; call it again while Pending.
// Each packet is "not received" or received with its arrival delta
// (section 3.1.5), in two-bit status vector chunks (section 3.1.4).
func (r *TWCCRecorder) AppendFeedback(dst []byte, senderSSRC, mediaSSRC uint32) []byte {
	if !r.Pending() {
		return dst
	}
	// The reference time comes from the first received packet reported;
	// lost ones before it are reported lost.
	var first int64 = -1
	for s := r.next; s <= r.highest; s++ {
		if a := r.arrival[s%twccRing]; a != 0 {
			first = a - 1
			if s-r.next >= twccMaxPerFeedback {
				// A run of lost packets longer than one feedback
				// (a sender that skipped numbers): not reported, a
				// packet with nothing received would be refused.
				r.next = s
			}
			break
		}
	}
	if first < 0 {
		return dst
	}
	// Reference time: 24 bits of 64 ms; deltas in 250 µs ticks.
	ref := first / 64000
	count := int(min(r.highest-r.next+1, twccMaxPerFeedback))
	// The deltas must fit in 16 bits signed: stop before the first that
	// does not (the next feedback carries it, with its own reference).
	prev := ref * 64000 / 250
	n := 0
	for ; n < count; n++ {
		a := r.arrival[(r.next+int64(n))%twccRing]
		if a == 0 {
			continue
		}
		t := (a - 1) / 250
		if d := t - prev; d < -32768 || d > 32767 {
			break
		}
		prev = t
	}
	count = n

	start := len(dst)
	dst = append(dst, 0x80|15, 205, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, senderSSRC)
	dst = binary.BigEndian.AppendUint32(dst, mediaSSRC)
	dst = binary.BigEndian.AppendUint16(dst, uint16(r.next))
	dst = binary.BigEndian.AppendUint16(dst, uint16(count))
	dst = binary.BigEndian.AppendUint32(dst, uint32(ref&0xFFFFFF)<<8|uint32(r.fbCount))
	r.fbCount++
	// Chunks: 7 two-bit symbols each (1 1 s s s s s s s s s s s s s s).
	for i := 0; i < count; i += 7 {
		chunk := uint16(0xC000)
		for j := 0; j < 7; j++ {
			sym := uint16(0)
			if i+j < count {
				sym = r.symbol(i+j, ref)
			}
			chunk |= sym << (12 - 2*j)
		}
		dst = binary.BigEndian.AppendUint16(dst, chunk)
	}
	// Deltas.
	prev = ref * 64000 / 250
	for i := 0; i < count; i++ {
		a := r.arrival[(r.next+int64(i))%twccRing]
		if a == 0 {
			continue
		}
		t := (a - 1) / 250
		d := t - prev
		prev = t
		if d >= 0 && d <= 255 {
			dst = append(dst, byte(d))
		} else {
			dst = binary.BigEndian.AppendUint16(dst, uint16(int16(d)))
		}
	}
	// Padding to 32 bits (RFC 3550 section 6.4.1: the last octet counts
	// the padding octets).
	if pad := (4 - (len(dst)-start)%4) % 4; pad > 0 {
		for k := 1; k < pad; k++ {
			dst = append(dst, 0)
		}
		dst = append(dst, byte(pad))
		dst[start] |= 0x20
	}
	binary.BigEndian.PutUint16(dst[start+2:], uint16((len(dst)-start)/4-1))
	for i := 0; i < count; i++ {
		r.arrival[(r.next+int64(i))%twccRing] = 0
	}
	r.next += int64(count)
	return dst
}

// symbol is the two-bit status of the i-th packet from next (section
// 3.1.1): 0 not received, 1 small delta, 2 large or negative delta. It
// recomputes the delta from the previous received packet.
func (r *TWCCRecorder) symbol(i int, ref int64) uint16 {
	a := r.arrival[(r.next+int64(i))%twccRing]
	if a == 0 {
		return 0
	}
	prev := ref * 64000 / 250
	for k := i - 1; k >= 0; k-- {
		if p := r.arrival[(r.next+int64(k))%twccRing]; p != 0 {
			prev = (p - 1) / 250
			break
		}
	}
	if d := (a-1)/250 - prev; d >= 0 && d <= 255 {
		return 1
	}
	return 2
}
