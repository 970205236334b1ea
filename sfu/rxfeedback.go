package sfu

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"

	"github.com/switchboard-chat/switchboard/media"
)

// rxFeedbackInterval is how often the receive side sends NACKs and
// transport-wide feedback (as pion's interceptors and browsers do);
// receiver reports go every rxReportTicks intervals.
const (
	rxFeedbackInterval = 100 * time.Millisecond
	rxReportTicks      = 10
	// rxMaxNACKs bounds the sequence numbers one NACK packet asks for.
	rxMaxNACKs = 64
)

// rxFeedbackFactory builds an rxFeedback for each PeerConnection.
type rxFeedbackFactory struct {
	now func() time.Time
	// made, when set, is handed the rxFeedback built (Participant.Quality
	// reads it).
	made *rxQuality
}

// NewInterceptor implements interceptor.Factory.
func (f rxFeedbackFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	r := &rxFeedback{now: f.now, senderSSRC: rand.Uint32(), streams: map[uint32]*rxStream{},
		local: map[uint32]*txStream{}, done: make(chan struct{})}
	r.pkts[0] = &r.out
	if f.made != nil {
		f.made.rx.Store(r)
	}
	return r, nil
}

// rxFeedback is the SFU's receive side for one PeerConnection, in place of
// pion's NACK generator, receiver report and TWCC feedback interceptors,
// which parse every received packet into a new rtp.Header: for every
// received RTP packet it notes the sequence number (generic NACKs for the
// missing ones, RFC 4585 section 6.2.1), the reception statistics
// (receiver reports, RFC 3550 section 6.4.2) and the transport-wide
// sequence number with the arrival time (feedback for the publisher's
// bandwidth estimate, draft-holmer-rmcat-transport-wide-cc-extensions-01),
// reading the raw header without allocating; sender reports it reads from
// the RTCP the publisher sends. Every rxFeedbackInterval it writes the
// feedback due.
type rxFeedback struct {
	interceptor.NoOp
	now        func() time.Time
	senderSSRC uint32

	// mu guards the fields below.
	mu      sync.Mutex
	writer  interceptor.RTCPWriter
	streams map[uint32]*rxStream
	local   map[uint32]*txStream // streams sent, by SSRC
	twcc    media.TWCCRecorder
	// twccMedia is the media SSRC named in transport-wide feedback: the
	// stream of the last packet that carried a transport-wide number.
	twccMedia uint32
	buf       []byte
	missing   []uint16
	closed    bool
	// quality is what the last receiver report said (quality.go).
	quality Quality

	// out is the packet being written and pkts hands it to pion (loop
	// only; reused, so that a write allocates only in pion).
	out  rawRTCP
	pkts [1]rtcp.Packet

	done chan struct{}
	wg   sync.WaitGroup
}

// rxStream is one received RTP stream's state.
type rxStream struct {
	ssrc  uint32
	tccID uint8
	nack  bool
	log   media.ReceiveLog
	stats media.ReceptionStats
}

// BindRTCPWriter implements interceptor.Interceptor: it keeps the writer
// and starts the feedback loop.
func (r *rxFeedback) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.writer == nil && !r.closed {
		r.writer = w
		r.wg.Add(1)
		go r.loop()
	}
	return w
}

// BindRemoteStream implements interceptor.Interceptor: the returned reader
// notes every packet of the stream.
func (r *rxFeedback) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	st := &rxStream{ssrc: info.SSRC, stats: media.ReceptionStats{ClockRate: info.ClockRate}}
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == media.TransportCCURI && e.ID > 0 && e.ID < 256 {
			st.tccID = uint8(e.ID)
		}
	}
	for _, fb := range info.RTCPFeedback {
		if fb.Type == "nack" && fb.Parameter == "" {
			st.nack = true
		}
	}
	r.mu.Lock()
	r.streams[info.SSRC] = st
	r.mu.Unlock()
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := reader.Read(b, a)
		if err != nil {
			return n, attr, err
		}
		var f media.RTPFields
		if !media.ParseRTPFields(b[:n], st.tccID, &f) {
			return n, attr, nil
		}
		now := r.now().UnixNano()
		r.mu.Lock()
		if st.nack {
			st.log.Add(f.SequenceNumber)
		}
		st.stats.Update(f.SequenceNumber, f.Timestamp, now)
		if f.HasTransportSeq {
			r.twcc.Record(f.TransportSeq, now)
			r.twccMedia = f.SSRC
		}
		r.mu.Unlock()
		return n, attr, nil
	})
}

// UnbindRemoteStream implements interceptor.Interceptor.
func (r *rxFeedback) UnbindRemoteStream(info *interceptor.StreamInfo) {
	r.mu.Lock()
	delete(r.streams, info.SSRC)
	r.mu.Unlock()
}

// BindRTCPReader implements interceptor.Interceptor: it notes the sender
// reports (RFC 3550 section 6.4.1) in what is read, for the LSR and DLSR
// of the receiver reports.
func (r *rxFeedback) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := reader.Read(b, a)
		if err != nil || n < 2 || !hasSenderReport(b[:n]) {
			return n, attr, err
		}
		now := r.now().UnixNano()
		r.mu.Lock()
		media.ForEachSenderReport(b[:n], func(ssrc uint32, ntp uint64) {
			if st := r.streams[ssrc]; st != nil {
				st.stats.OnSenderReport(ntp, now)
			}
		})
		r.mu.Unlock()
		return n, attr, nil
	})
}

// Close implements interceptor.Interceptor: it stops the feedback loop.
func (r *rxFeedback) Close() error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.done)
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

func (r *rxFeedback) loop() {
	defer r.wg.Done()
	t := time.NewTicker(rxFeedbackInterval)
	defer t.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		r.mu.Lock()
		r.out = r.feedbackLocked(tick%rxReportTicks == 0)
		w := r.writer
		r.mu.Unlock()
		if len(r.out) > 0 {
			// pion marshals the packets it is given into a new buffer
			// before encrypting, so r.out is free again afterwards.
			_, _ = w.Write(r.pkts[:], nil)
		}
	}
}

// feedbackLocked builds the compound RTCP packet due now in r.buf: sender
// and receiver reports every rxReportTicks intervals (a compound packet
// starts with one, RFC 3550 section 6.1), NACKs for missing packets and
// transport-wide feedback.
func (r *rxFeedback) feedbackLocked(report bool) []byte {
	now := r.now().UnixNano()
	buf := r.buf[:0]
	if report {
		for _, st := range r.local {
			buf = st.appendSenderReport(buf, now)
		}
	}
	if report && len(r.streams) == 0 {
		r.quality = Quality{At: time.Unix(0, now)}
	}
	if report && len(r.streams) > 0 {
		start := len(buf)
		buf = append(buf, 0x80, 201, 0, 0, byte(r.senderSSRC>>24), byte(r.senderSSRC>>16),
			byte(r.senderSSRC>>8), byte(r.senderSSRC))
		blocks := 0
		q := Quality{At: time.Unix(0, now)}
		for ssrc, st := range r.streams {
			if blocks == 31 { // the RC field's limit
				break
			}
			var ok bool
			if buf, ok = st.stats.AppendReportBlock(buf, ssrc, now); ok {
				blocks++
				q.noteBlock(buf[len(buf)-24:], st.stats.ClockRate)
			}
		}
		r.quality = q
		if blocks == 0 {
			buf = buf[:start]
		} else {
			buf[start] |= byte(blocks)
			setRTCPLength(buf[start:])
		}
	}
	for ssrc, st := range r.streams {
		if !st.nack {
			continue
		}
		if r.missing = st.log.AppendMissing(r.missing[:0], rxMaxNACKs); len(r.missing) > 0 {
			buf = media.AppendNACK(buf, r.senderSSRC, ssrc, r.missing)
		}
	}
	for i := 0; i < 4 && r.twcc.Pending(); i++ {
		buf = r.twcc.AppendFeedback(buf, r.senderSSRC, r.twccMedia)
	}
	r.buf = buf[:0] // reused by the next call, once this packet is written
	return buf
}

// setRTCPLength writes the length field of the one RTCP packet in b (RFC
// 3550 section 6.4.1: 32-bit words minus one).
func setRTCPLength(b []byte) {
	n := len(b)/4 - 1
	b[2], b[3] = byte(n>>8), byte(n)
}

// rawRTCP hands ready-made RTCP bytes to pion's RTCP writer, which
// marshals every packet it is given.
type rawRTCP []byte

// Marshal implements rtcp.Packet.
func (p *rawRTCP) Marshal() ([]byte, error) { return *p, nil }

// Unmarshal implements rtcp.Packet.
func (p *rawRTCP) Unmarshal(b []byte) error { *p = append((*p)[:0], b...); return nil }

// MarshalSize implements rtcp.Packet.
func (p *rawRTCP) MarshalSize() int { return len(*p) }

// DestinationSSRC implements rtcp.Packet: the media SSRCs the packets
// name.
func (p *rawRTCP) DestinationSSRC() []uint32 {
	var out []uint32
	for rest := []byte(*p); len(rest) > 0; {
		_, ssrc, _, next, err := media.NextFeedback(rest)
		if err != nil {
			break
		}
		if ssrc != 0 {
			out = append(out, ssrc)
		}
		rest = next
	}
	return out
}

// hasSenderReport reports whether a compound RTCP packet holds a sender
// report (packet type 200). A malformed compound packet has none.
func hasSenderReport(b []byte) bool {
	for len(b) >= 4 {
		if b[1] == 200 {
			return true
		}
		size := (int(binary.BigEndian.Uint16(b[2:])) + 1) * 4
		if size > len(b) {
			return false
		}
		b = b[size:]
	}
	return false
}
