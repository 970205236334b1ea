package sfu

import (
	"encoding/binary"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/switchboard-chat/switchboard/media"
)

// rtcpSink records what rxFeedback writes.
type rtcpSink struct {
	mu  sync.Mutex
	raw [][]byte
}

func (s *rtcpSink) Write(pkts []rtcp.Packet, _ interceptor.Attributes) (int, error) {
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.raw = append(s.raw, b)
	s.mu.Unlock()
	return len(b), nil
}

// TestRxFeedback drives the SFU's RTCP interceptor with a publisher's
// stream (gaps, transport-wide numbers, a sender report) and a down
// track's writes, and checks the compound packet it writes with pion's
// parser: a sender report for the down track, a receiver report that
// counts the loss and echoes the LSR, a NACK for exactly the missing
// packets and transport-wide feedback for every packet; and that the
// per-packet paths allocate nothing.
func TestRxFeedback(t *testing.T) {
	clock := time.Unix(1_700_000_000, 0)
	var clockMu sync.Mutex
	now := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	advance := func(d time.Duration) { clockMu.Lock(); clock = clock.Add(d); clockMu.Unlock() }
	rxq := &rxQuality{}
	f := rxFeedbackFactory{now: now, made: rxq}
	i, err := f.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	r := i.(*rxFeedback)
	if rxq.rx.Load() != r {
		t.Fatal("the factory did not hand over its rxFeedback")
	}
	sink := &rtcpSink{}
	r.mu.Lock()
	r.writer = sink // as BindRTCPWriter, without its ticker: the test ticks
	r.mu.Unlock()

	const pubSSRC, downSSRC = 1111, 2222
	info := &interceptor.StreamInfo{SSRC: pubSSRC, ClockRate: 90000,
		RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: media.TransportCCURI, ID: 3}},
		RTCPFeedback:        []interceptor.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}}
	var next []byte
	reader := r.BindRemoteStream(info, interceptor.RTPReaderFunc(
		func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
			return copy(b, next), a, nil
		}))
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: pubSSRC}, Payload: make([]byte, 900)}
	buf := make([]byte, 1500)
	receive := func(seq, tcc uint16) {
		pkt.SequenceNumber, pkt.Timestamp = seq, uint32(seq)*3000
		_ = pkt.SetExtension(3, []byte{byte(tcc >> 8), byte(tcc)})
		next, _ = pkt.Marshal()
		if _, _, err := reader.Read(buf, nil); err != nil {
			t.Fatal(err)
		}
	}
	// 20 packets, 5 and 6 and 13 lost.
	var sent []uint16
	for s := uint16(0); s < 20; s++ {
		if s == 5 || s == 6 || s == 13 {
			continue
		}
		receive(65530+s, 100+s)
		sent = append(sent, s)
		advance(time.Millisecond)
	}
	// The publisher's sender report, read through the RTCP reader.
	sr, _ := (&rtcp.SenderReport{SSRC: pubSSRC, NTPTime: 0xAAAABBBBCCCCDDDD}).Marshal()
	rtcpReader := r.BindRTCPReader(interceptor.RTCPReaderFunc(
		func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
			return copy(b, sr), a, nil
		}))
	if _, _, err := rtcpReader.Read(buf, nil); err != nil {
		t.Fatal(err)
	}
	// A down track sends 10 packets of 100 bytes.
	writer := r.BindLocalStream(&interceptor.StreamInfo{SSRC: downSSRC, ClockRate: 90000},
		interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
			return len(p), nil
		}))
	out := rtp.Header{Version: 2, SSRC: downSSRC}
	for s := uint16(0); s < 10; s++ {
		out.SequenceNumber, out.Timestamp = s, 5000+uint32(s/2)*3000
		if _, err := writer.Write(&out, make([]byte, 100), nil); err != nil {
			t.Fatal(err)
		}
	}
	advance(500 * time.Millisecond)

	r.mu.Lock()
	raw := slices.Clone(r.feedbackLocked(true))
	r.mu.Unlock()
	pkts, err := rtcp.Unmarshal(raw)
	if err != nil {
		t.Fatalf("compound packet: %v", err)
	}
	var gotSR *rtcp.SenderReport
	var gotRR *rtcp.ReceiverReport
	var nacked []uint16
	var fb *rtcp.TransportLayerCC
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.SenderReport:
			gotSR = p
		case *rtcp.ReceiverReport:
			gotRR = p
		case *rtcp.TransportLayerNack:
			if p.MediaSSRC != pubSSRC {
				t.Errorf("NACK for SSRC %d", p.MediaSSRC)
			}
			for _, n := range p.Nacks {
				nacked = append(nacked, n.PacketList()...)
			}
		case *rtcp.TransportLayerCC:
			fb = p
		}
	}
	if _, ok := pkts[0].(*rtcp.SenderReport); !ok {
		t.Errorf("compound starts with %T, want a report", pkts[0])
	}
	if gotSR == nil || gotSR.SSRC != downSSRC || gotSR.PacketCount != 10 || gotSR.OctetCount != 1000 {
		t.Errorf("sender report %+v", gotSR)
	} else if want := uint32(5000 + 4*3000 + 45000); gotSR.RTPTime < want-90 || gotSR.RTPTime > want+90 {
		// The last frame (timestamp 17000) went 500 ms before the report.
		t.Errorf("SR RTP time %d, want about %d", gotSR.RTPTime, want)
	}
	if gotRR == nil || len(gotRR.Reports) != 1 {
		t.Fatalf("receiver report %+v", gotRR)
	}
	rep := gotRR.Reports[0]
	if rep.SSRC != pubSSRC || rep.TotalLost != 3 || rep.LastSequenceNumber != 65536+13 ||
		rep.LastSenderReport != 0xBBBBCCCC || rep.Delay != 32768 {
		t.Errorf("report block %+v", rep)
	}
	// The participant's Quality is that report block's (3 of 20 lost).
	q := (&Participant{rxq: rxq}).Quality()
	wantJitter := time.Duration(rep.Jitter) * time.Second / 90000
	if q.Streams != 1 || q.Loss != float64(rep.FractionLost)/256 || q.Loss < 0.14 || q.Loss > 0.16 ||
		q.Jitter != wantJitter || !q.At.Equal(now()) {
		t.Errorf("quality %+v, want 1 stream, loss %d/256 (0.15), jitter %v", q, rep.FractionLost, wantJitter)
	}
	if want := []uint16{65535, 0, 7}; !slices.Equal(nacked, want) {
		t.Errorf("NACKed %v, want %v", nacked, want)
	}
	if fb == nil || fb.BaseSequenceNumber != 100 || fb.PacketStatusCount != 20 || len(fb.RecvDeltas) != 17 {
		t.Fatalf("transport-wide feedback %+v", fb)
	}

	// Once the lost packets arrive (resent), nothing more is asked for.
	for _, s := range []uint16{5, 6, 13} {
		receive(65530+s, 200+s)
	}
	r.mu.Lock()
	raw = slices.Clone(r.feedbackLocked(false))
	r.mu.Unlock()
	pkts, err = rtcp.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if _, ok := p.(*rtcp.TransportLayerNack); ok {
			t.Errorf("NACK after recovery: %+v", p)
		}
	}

	// Per packet, nothing is allocated: receive and send.
	s := uint16(20)
	if a := testing.AllocsPerRun(500, func() {
		s++
		binary.BigEndian.PutUint16(next[2:], 65530+s)
		if _, _, err := reader.Read(buf, nil); err != nil {
			t.Fatal(err)
		}
		out.SequenceNumber++
		_, _ = writer.Write(&out, buf[:100], nil)
	}); a != 0 {
		t.Errorf("%v allocations per packet, want 0", a)
	}
	r.mu.Lock()
	if a := testing.AllocsPerRun(50, func() { r.feedbackLocked(true) }); a != 0 {
		t.Errorf("building feedback: %v allocations, want 0", a)
	}
	r.mu.Unlock()

	r.UnbindRemoteStream(info)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestToNTP(t *testing.T) {
	// 2000-01-01 00:00:00.5 UTC: 3155673600 s after 1900, half a second.
	got := toNTP(time.Date(2000, 1, 1, 0, 0, 0, 5e8, time.UTC).UnixNano())
	if want := uint64(3155673600)<<32 | 1<<31; got != want {
		t.Errorf("toNTP = %#x, want %#x", got, want)
	}
}

// BenchmarkRxFeedbackReceive is the receive side's per-packet work for a
// publisher's packet: read the header and the transport-wide number, note
// it for NACKs, reports and feedback.
func BenchmarkRxFeedbackReceive(b *testing.B) {
	i, _ := rxFeedbackFactory{now: time.Now}.NewInterceptor("")
	r := i.(*rxFeedback)
	info := &interceptor.StreamInfo{SSRC: 1, ClockRate: 90000,
		RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: media.TransportCCURI, ID: 3}},
		RTCPFeedback:        []interceptor.RTCPFeedback{{Type: "nack"}}}
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 1}, Payload: make([]byte, 1100)}
	_ = pkt.SetExtension(3, []byte{0, 0})
	raw, _ := pkt.Marshal()
	reader := r.BindRemoteStream(info, interceptor.RTPReaderFunc(
		func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
			return copy(b, raw), a, nil
		}))
	buf := make([]byte, 1500)
	b.ReportAllocs()
	s := uint16(0)
	for b.Loop() {
		s++
		binary.BigEndian.PutUint16(raw[2:], s)
		_, _, _ = reader.Read(buf, nil)
		if s%64 == 0 { // feedback every so often keeps the logs short
			r.mu.Lock()
			r.feedbackLocked(s%640 == 0)
			r.mu.Unlock()
		}
	}
	_ = r.Close()
}
