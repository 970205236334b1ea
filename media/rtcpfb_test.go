package media

import (
	"slices"
	"testing"

	"github.com/pion/rtcp"
)

// withHeader fills in the RTCP header pion's Marshal of a
// TransportLayerCC expects its caller to set.
func withHeader(fb *rtcp.TransportLayerCC) *rtcp.TransportLayerCC {
	fb.Header = rtcp.Header{Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback,
		Length: uint16(fb.Len()/4 - 1)}
	return fb
}

// walkCompound lists what NextFeedback finds in b.
type walked struct {
	typ  FeedbackType
	ssrc uint32
	nack []uint16
	fci  []byte
	pad  bool // the padding bit was set
}

func walkCompound(b []byte) ([]walked, error) {
	var out []walked
	for len(b) > 0 {
		typ, ssrc, fci, rest, err := NextFeedback(b)
		if err != nil {
			return out, err
		}
		w := walked{typ: typ, ssrc: ssrc, fci: fci, pad: b[0]&0x20 != 0}
		if typ == FeedbackNACK {
			ForEachNACK(fci, func(s uint16) { w.nack = append(w.nack, s) })
		}
		out = append(out, w)
		b = rest
	}
	return out, nil
}

func TestNextFeedback(t *testing.T) {
	twcc := withHeader(feedback(7, 20, func(i int) bool { return i%5 == 0 }, func(i int) int64 { return int64(i%3) * 250 }))
	nack := &rtcp.TransportLayerNack{MediaSSRC: 0xa1, Nacks: []rtcp.NackPair{{PacketID: 100, LostPackets: 0x8005},
		{PacketID: 65530, LostPackets: 0x0041}}}
	compound, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: 1},
		nack,
		&rtcp.PictureLossIndication{MediaSSRC: 0xa2},
		&rtcp.FullIntraRequest{MediaSSRC: 0xa3, FIR: []rtcp.FIREntry{{SSRC: 0xa3}}},
		twcc,
		&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 1,
			Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "x"}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := walkCompound(compound)
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := []FeedbackType{FeedbackOther, FeedbackNACK, FeedbackPLI, FeedbackFIR, FeedbackTWCC, FeedbackOther}
	if len(got) != len(wantTypes) {
		t.Fatalf("walked %d packets, want %d", len(got), len(wantTypes))
	}
	for i, w := range got {
		if w.typ != wantTypes[i] {
			t.Errorf("packet %d: type %d, want %d", i, w.typ, wantTypes[i])
		}
	}
	var wantSeqs []uint16
	for _, p := range nack.Nacks {
		wantSeqs = append(wantSeqs, p.PacketList()...)
	}
	if !slices.Equal(got[1].nack, wantSeqs) {
		t.Errorf("NACKed %v, want %v", got[1].nack, wantSeqs)
	}
	if got[1].ssrc != 0xa1 || got[2].ssrc != 0xa2 || got[4].ssrc != twcc.MediaSSRC {
		t.Errorf("media SSRCs %x %x %x", got[1].ssrc, got[2].ssrc, got[4].ssrc)
	}

	for _, bad := range [][]byte{
		{0x81, 205, 0, 9, 0, 0, 0, 0}, // length past the end
		{0x41, 205, 0, 0},             // version 1
		{0xa1, 205, 0, 0},             // padding count 0
		{0x81, 205, 0, 1, 0, 0, 0, 0}, // feedback without media SSRC
	} {
		if _, err := walkCompound(bad); err == nil {
			t.Errorf("% x: no error", bad)
		}
	}
}

// estimatorState is what feedback changes in an estimator.
func estimatorState(e *BandwidthEstimator) any {
	e.mu.Lock()
	defer e.mu.Unlock()
	return struct {
		est, acked       float64
		samples          [trendWindow]delaySample
		next, n          int
		first, ackB, ack int64
	}{e.estimate, e.ackedRate, e.samples, e.nextSample, e.nSamples, e.ackFirst, e.ackBytes, e.ackedAt}
}

// twinEstimators returns two estimators that sent the same 300 packets.
func twinEstimators() (*BandwidthEstimator, *BandwidthEstimator) {
	a := NewBandwidthEstimator(EstimatorConfig{Min: 10_000, Max: 5_000_000})
	b := NewBandwidthEstimator(EstimatorConfig{Min: 10_000, Max: 5_000_000})
	for i := range 300 {
		a.Sent(1000+i, int64(i)*1e6)
		b.Sent(1000+i, int64(i)*1e6)
	}
	return a, b
}

// TestOnFeedbackFCI: the raw parser folds feedback exactly as OnFeedback
// does with pion's parse of the same packet, for run-length chunks, both
// status vector sizes, small and large deltas, negative deltas and loss.
func TestOnFeedbackFCI(t *testing.T) {
	cases := map[string]*rtcp.TransportLayerCC{
		"run length": feedback(3, 40, func(i int) bool { return i%7 == 3 }, func(i int) int64 { return 1000 }),
		"status vectors": {BaseSequenceNumber: 10, PacketStatusCount: 21, ReferenceTime: 77,
			PacketChunks: []rtcp.PacketStatusChunk{
				&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeOneBit,
					SymbolList: []uint16{1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1}},
				&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit,
					SymbolList: []uint16{1, 2, 0, 2, 1, 1, 0}},
			},
			RecvDeltas: []*rtcp.RecvDelta{
				{Type: 1, Delta: 250}, {Type: 1, Delta: 500}, {Type: 1, Delta: 0}, {Type: 1, Delta: 63750},
				{Type: 1, Delta: 250}, {Type: 1, Delta: 250}, {Type: 1, Delta: 250}, {Type: 1, Delta: 250},
				{Type: 1, Delta: 250}, {Type: 1, Delta: 250}, {Type: 1, Delta: 250},
				{Type: 1, Delta: 750}, {Type: 2, Delta: -8000}, {Type: 2, Delta: 80000}, {Type: 1, Delta: 250},
				{Type: 1, Delta: 250},
			}},
	}
	for name, fb := range cases {
		t.Run(name, func(t *testing.T) {
			raw, err := withHeader(fb).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			parsed := &rtcp.TransportLayerCC{}
			if err := parsed.Unmarshal(raw); err != nil {
				t.Fatal(err)
			}
			a, b := twinEstimators()
			a.OnFeedback(parsed, 2e9)
			if err := b.OnFeedbackFCI(raw[12:], 2e9); err != nil {
				t.Fatal(err)
			}
			if sa, sb := estimatorState(a), estimatorState(b); sa != sb {
				t.Errorf("raw parse diverged:\n pion %+v\n raw  %+v", sa, sb)
			}
			if a.nSamples == 0 {
				t.Error("no packet acknowledged: the case tests nothing")
			}
			// Truncated: an error, and no change.
			before := estimatorState(b)
			if err := b.OnFeedbackFCI(raw[12:len(raw)-4], 3e9); err == nil {
				t.Error("truncated FCI accepted")
			}
			if estimatorState(b) != before {
				t.Error("truncated FCI changed the estimator")
			}
		})
	}
}

// FuzzRTCPFeedback: NextFeedback, ForEachNACK and OnFeedbackFCI never
// panic on arbitrary input, and agree with pion's parser wherever it
// accepts the packet.
func FuzzRTCPFeedback(f *testing.F) {
	for _, p := range []rtcp.Packet{
		withHeader(feedback(0, 5, func(i int) bool { return i == 2 }, func(int) int64 { return 1000 })),
		&rtcp.TransportLayerNack{MediaSSRC: 1, Nacks: []rtcp.NackPair{{PacketID: 9, LostPackets: 3}}},
		&rtcp.PictureLossIndication{MediaSSRC: 2},
	} {
		b, _ := p.Marshal()
		f.Add(b)
	}
	f.Add([]byte{0x8f, 205, 0, 4, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0, 3, 0, 0, 1, 0, 0xd5, 0x55, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, walkErr := walkCompound(b)
		for _, w := range got {
			if w.typ == FeedbackTWCC {
				e := NewBandwidthEstimator(EstimatorConfig{Min: 10_000, Max: 1_000_000})
				_ = e.OnFeedbackFCI(w.fci, 1e9)
				if est := e.Estimate(); est < 10_000 || est > 1_000_000 {
					t.Fatalf("estimate %d out of bounds", est)
				}
			}
		}
		pkts, err := rtcp.Unmarshal(b)
		if err != nil || walkErr != nil || len(pkts) != len(got) {
			return
		}
		for i, p := range pkts {
			if got[i].pad {
				continue // pion reads padding as FCI; NextFeedback strips it (RFC 3550 section 6.4.1)
			}
			switch p := p.(type) {
			case *rtcp.TransportLayerNack:
				var want []uint16
				for _, pair := range p.Nacks {
					want = append(want, pair.PacketList()...)
				}
				if got[i].typ != FeedbackNACK || !slices.Equal(got[i].nack, want) {
					t.Fatalf("NACK %d: got %v, pion %v", i, got[i].nack, want)
				}
			case *rtcp.PictureLossIndication:
				if got[i].typ != FeedbackPLI || got[i].ssrc != p.MediaSSRC {
					t.Fatalf("PLI %d: got type %d SSRC %x", i, got[i].typ, got[i].ssrc)
				}
			case *rtcp.TransportLayerCC:
				if got[i].typ != FeedbackTWCC {
					t.Fatalf("TWCC %d: got type %d", i, got[i].typ)
				}
				a, c := twinEstimators()
				a.OnFeedback(p, 2e9)
				if err := c.OnFeedbackFCI(got[i].fci, 2e9); err != nil {
					t.Fatalf("pion accepts TWCC %d, raw parse: %v", i, err)
				}
				if sa, sc := estimatorState(a), estimatorState(c); sa != sc {
					t.Fatalf("TWCC %d diverged:\n pion %+v\n raw  %+v", i, sa, sc)
				}
			}
		}
	})
}

// BenchmarkFeedbackPath is a subscriber's feedback as the SFU handles it:
// walk a compound packet, answer its NACK list, fold its TWCC feedback.
func BenchmarkFeedbackPath(b *testing.B) {
	twcc := withHeader(feedback(0, 100, func(i int) bool { return i%17 == 0 }, func(i int) int64 { return 250 }))
	compound, err := rtcp.Marshal([]rtcp.Packet{twcc,
		&rtcp.TransportLayerNack{MediaSSRC: 1, Nacks: []rtcp.NackPair{{PacketID: 9, LostPackets: 3}}}})
	if err != nil {
		b.Fatal(err)
	}
	e := NewBandwidthEstimator(EstimatorConfig{})
	for i := range 200 {
		e.Sent(1000, int64(i)*1e6)
	}
	nacked := 0
	b.ReportAllocs()
	for b.Loop() {
		for rest := compound; len(rest) > 0; {
			typ, _, fci, r, err := NextFeedback(rest)
			if err != nil {
				b.Fatal(err)
			}
			switch typ {
			case FeedbackNACK:
				ForEachNACK(fci, func(uint16) { nacked++ })
			case FeedbackTWCC:
				if err := e.OnFeedbackFCI(fci, 1e9); err != nil {
					b.Fatal(err)
				}
			}
			rest = r
		}
	}
}

// TestOnFeedbackFCIOnce: the same feedback packet handed over twice (as
// pion does when a compound packet names several senders) is folded once;
// the next feedback packet is folded.
func TestOnFeedbackFCIOnce(t *testing.T) {
	a, b := twinEstimators()
	fb := withHeader(feedback(10, 30, func(i int) bool { return i == 4 }, func(int) int64 { return 1000 }))
	raw, err := fb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.OnFeedbackFCI(raw[12:], 2e9); err != nil {
		t.Fatal(err)
	}
	_ = b.OnFeedbackFCI(raw[12:], 2e9)
	_ = b.OnFeedbackFCI(raw[12:], 2e9)
	if estimatorState(a) != estimatorState(b) {
		t.Error("a copy of a feedback packet was folded again")
	}
	fb.FbPktCount++
	raw2, _ := fb.Marshal()
	before := estimatorState(b)
	_ = b.OnFeedbackFCI(raw2[12:], 2.1e9)
	if estimatorState(b) == before {
		t.Error("the next feedback packet was ignored")
	}
}
