package media

import (
	"slices"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

func TestParseRTPFields(t *testing.T) {
	for _, tc := range []struct {
		name    string
		twoByte bool
	}{{"one-byte", false}, {"two-byte", true}} {
		t.Run(tc.name, func(t *testing.T) {
			p := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 65535, Timestamp: 77, SSRC: 0xdeadbeef,
				CSRC: []uint32{1, 2}}, Payload: []byte{1, 2, 3}}
			if tc.twoByte {
				p.Extension, p.ExtensionProfile = true, 0x1000
			}
			_ = p.SetExtension(1, []byte{9})
			_ = p.SetExtension(5, []byte{0x12, 0x34})
			raw, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			var f RTPFields
			if !ParseRTPFields(raw, 5, &f) {
				t.Fatal("not parsed")
			}
			want := RTPFields{SSRC: 0xdeadbeef, SequenceNumber: 65535, Timestamp: 77, TransportSeq: 0x1234, HasTransportSeq: true}
			if f != want {
				t.Errorf("got %+v, want %+v", f, want)
			}
			if !ParseRTPFields(raw, 7, &f) || f.HasTransportSeq {
				t.Errorf("extension 7: %+v", f)
			}
			if ParseRTPFields(raw[:13], 5, &f) {
				t.Error("truncated packet parsed")
			}
		})
	}
}

func TestReceiveLog(t *testing.T) {
	var r ReceiveLog
	for _, s := range []uint16{65530, 65531, 65533, 2, 3, 5} { // wraps
		r.Add(s)
	}
	got := r.AppendMissing(nil, 100)
	want := []uint16{65532, 65534, 65535, 0, 1, 4}
	if !slices.Equal(got, want) {
		t.Fatalf("missing %v, want %v", got, want)
	}
	r.Add(65534) // a late arrival (a resend)
	r.Add(0)
	got = r.AppendMissing(nil, 3)
	if want := []uint16{65532, 65535, 1}; !slices.Equal(got, want) {
		t.Fatalf("missing %v, want %v", got, want)
	}
	// Far ahead: what was missing falls out of the window.
	r.Add(5 + 2*nackWindow)
	r.Add(6 + 2*nackWindow)
	if got := r.AppendMissing(nil, 100); len(got) != 0 {
		t.Fatalf("missing after a jump: %v", got)
	}
	// A long gap inside the window is asked for, oldest first, bounded.
	r.Add(6 + 2*nackWindow + 300)
	if got := r.AppendMissing(nil, 1000); len(got) != 299 || got[0] != 7+2*nackWindow {
		t.Fatalf("missing %d from %v", len(got), got[:1])
	}
}

func TestAppendNACK(t *testing.T) {
	seqs := []uint16{100, 101, 116, 117, 200, 65535, 3}
	raw := AppendNACK(nil, 1, 2, seqs[:5])
	pkts, err := rtcp.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	n, ok := pkts[0].(*rtcp.TransportLayerNack)
	if !ok || n.SenderSSRC != 1 || n.MediaSSRC != 2 {
		t.Fatalf("got %#v", pkts[0])
	}
	var got []uint16
	for _, p := range n.Nacks {
		got = append(got, p.PacketList()...)
	}
	if !slices.Equal(got, seqs[:5]) {
		t.Errorf("NACKed %v, want %v", got, seqs[:5])
	}
	var walked []uint16
	typ, ssrc, fci, _, err := NextFeedback(AppendNACK(nil, 1, 2, seqs[5:]))
	if err != nil || typ != FeedbackNACK || ssrc != 2 {
		t.Fatal(typ, ssrc, err)
	}
	ForEachNACK(fci, func(s uint16) { walked = append(walked, s) })
	if !slices.Equal(walked, []uint16{65535, 3}) {
		t.Errorf("NACK across wrap-around: %v", walked)
	}
}

func TestReceptionStats(t *testing.T) {
	s := ReceptionStats{ClockRate: 90000}
	now := int64(1e12)
	// 100 packets, 10 lost, 3000 ticks (33.3 ms) apart, arriving on time.
	for i := 0; i < 100; i++ {
		if i%10 == 5 {
			continue
		}
		s.Update(uint16(65500+i), uint32(i*3000), now+int64(i)*1e9/30)
	}
	s.OnSenderReport(0x1122334455667788, now)
	b, ok := s.AppendReportBlock(nil, 42, now+int64(1e9)/2)
	if !ok {
		t.Fatal("no block")
	}
	raw := append([]byte{0x81, 201, 0, 7, 0, 0, 0, 9}, b...)
	pkts, err := rtcp.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	rr := pkts[0].(*rtcp.ReceiverReport).Reports[0]
	if rr.SSRC != 42 || rr.TotalLost != 10 || rr.FractionLost != 10*256/100 ||
		rr.LastSequenceNumber != 65536+99-36 || rr.LastSenderReport != 0x33445566 || rr.Delay != 32768 {
		t.Errorf("report block %+v", rr)
	}
	if rr.Jitter > 100 {
		t.Errorf("jitter %d for packets on time", rr.Jitter)
	}
	// The next interval: nothing lost.
	s.Update(uint16(100-36), 300000, now+int64(100)*1e9/30)
	b, _ = s.AppendReportBlock(nil, 42, now+int64(1e9))
	if b[4] != 0 {
		t.Errorf("fraction lost %d in a loss-free interval", b[4])
	}
}

func TestTWCCFeedback(t *testing.T) {
	var r TWCCRecorder
	now := int64(1_700_000_000_123_456_789)
	var sent []uint16
	// 30 packets 1 ms apart, every fifth lost; one arrives 20 s late
	// (its delta does not fit: the next feedback carries it).
	for i := 0; i < 30; i++ {
		seq := uint16(65520 + i)
		sent = append(sent, seq)
		if i%5 == 3 {
			continue
		}
		r.Record(seq, now+int64(i)*1e6)
	}
	raw := r.AppendFeedback(nil, 7, 8)
	if r.Pending() {
		t.Fatal("still pending after one feedback")
	}
	pkts, err := rtcp.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	fb, ok := pkts[0].(*rtcp.TransportLayerCC)
	if !ok {
		t.Fatalf("got %#v", pkts[0])
	}
	if fb.SenderSSRC != 7 || fb.MediaSSRC != 8 || fb.BaseSequenceNumber != 65520 || fb.PacketStatusCount != 30 {
		t.Fatalf("feedback %+v", fb)
	}
	if len(fb.RecvDeltas) != 24 {
		t.Fatalf("%d deltas, want 24", len(fb.RecvDeltas))
	}
	// Arrival times as the sender reconstructs them: reference time plus
	// the running sum of deltas, 1 ms apart (±250 µs of rounding).
	at := int64(fb.ReferenceTime) * 64000
	var prev int64 = -1
	for _, d := range fb.RecvDeltas {
		at += d.Delta
		if prev >= 0 && (at-prev < 750 || at-prev > 2250) {
			t.Errorf("arrival step %d µs", at-prev)
		}
		prev = at
	}
	// Our own parser reads it too.
	e := NewBandwidthEstimator(EstimatorConfig{})
	for range sent {
		e.Sent(1000, now)
	}
	typ, _, fci, _, err := NextFeedback(raw)
	if err != nil || typ != FeedbackTWCC {
		t.Fatal(typ, err)
	}
	if err := e.OnFeedbackFCI(fci, now); err != nil {
		t.Fatal(err)
	}

	// A late packet and one beyond int16 range of deltas.
	r.Record(65521, now+time30ms) // older than the last feedback: ignored
	r.Record(14, now+40e6)
	r.Record(15, now+20e9)
	raw = r.AppendFeedback(nil, 7, 8)
	pkts, err = rtcp.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	if fb := pkts[0].(*rtcp.TransportLayerCC); fb.BaseSequenceNumber != 14 || fb.PacketStatusCount != 1 {
		t.Fatalf("second feedback %+v", fb)
	}
	if !r.Pending() {
		t.Fatal("packet 15 not pending")
	}
	raw = r.AppendFeedback(nil, 7, 8)
	if fb := mustTWCC(t, raw); fb.BaseSequenceNumber != 15 || fb.PacketStatusCount != 1 || fb.FbPktCount != 2 {
		t.Fatalf("third feedback %+v", fb)
	}
}

const time30ms = 30e6

func mustTWCC(t *testing.T, raw []byte) *rtcp.TransportLayerCC {
	t.Helper()
	pkts, err := rtcp.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	fb, ok := pkts[0].(*rtcp.TransportLayerCC)
	if !ok {
		t.Fatalf("got %#v", pkts[0])
	}
	return fb
}

func TestReceiveSideAllocs(t *testing.T) {
	var (
		r   TWCCRecorder
		l   ReceiveLog
		st  = ReceptionStats{ClockRate: 90000}
		buf = make([]byte, 0, 1500)
		ms  = make([]uint16, 0, 64)
		f   RTPFields
	)
	p := rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 1}, Payload: make([]byte, 1000)}
	_ = p.SetExtension(3, []byte{0, 0})
	raw, _ := p.Marshal()
	i := 0
	if a := testing.AllocsPerRun(1000, func() {
		i++
		raw[3] = byte(i)
		ParseRTPFields(raw, 3, &f)
		l.Add(f.SequenceNumber)
		st.Update(f.SequenceNumber, f.Timestamp, int64(i)*1e6)
		r.Record(uint16(i), int64(i)*1e6)
		if i%100 == 0 {
			buf = r.AppendFeedback(buf[:0], 1, 2)
			buf = AppendNACK(buf[:0], 1, 2, l.AppendMissing(ms[:0], 64))
			buf, _ = st.AppendReportBlock(buf[:0], 1, int64(i)*1e6)
		}
	}); a != 0 {
		t.Errorf("%v allocations per received packet, want 0", a)
	}
}
