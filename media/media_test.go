package media

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// vp8 builds a VP8 payload: descriptor (15-bit picture ID when wide,
// TL0PICIDX, TID) then a payload header, key frame header on key frames.
func vp8(pic uint16, wide bool, tl0 uint8, start, key bool, w, h uint16) []byte {
	first := byte(0x80)
	if start {
		first |= 0x10
	}
	b := []byte{first, 0xe0}
	if wide {
		b = append(b, 0x80|byte(pic>>8), byte(pic))
	} else {
		b = append(b, byte(pic)&0x7f)
	}
	b = append(b, tl0, 0x40) // TL0PICIDX, TID=1
	if start {
		if key {
			b = append(b, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, byte(w), byte(w>>8), byte(h), byte(h>>8))
		} else {
			b = append(b, 0x11, 0, 0)
		}
	}
	return append(b, 1, 2, 3)
}

func TestParseVP8(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    VP8Descriptor
		wantErr bool
	}{
		{name: "empty", in: nil, wantErr: true},
		{name: "minimal", in: []byte{0x10, 0x01}, want: VP8Descriptor{Size: 1, Start: true}},
		{name: "minimal key", in: []byte{0x10, 0x00}, want: VP8Descriptor{Size: 1, Start: true, Keyframe: true}},
		{name: "continuation not key", in: []byte{0x00, 0x00}, want: VP8Descriptor{Size: 1}},
		{name: "X without byte", in: []byte{0x80}, wantErr: true},
		{name: "I without picture ID", in: []byte{0x80, 0x80}, wantErr: true},
		{name: "wide picture ID cut", in: []byte{0x80, 0x80, 0x81}, wantErr: true},
		{name: "L cut", in: []byte{0x80, 0x40}, wantErr: true},
		{name: "T cut", in: []byte{0x80, 0x20}, wantErr: true},
		{name: "key frame with size", in: vp8(0x1234, true, 7, true, true, 640, 360),
			want: VP8Descriptor{Size: 6, Start: true, HasPictureID: true, PictureIDWide: true, PictureID: 0x1234,
				HasTL0PICIDX: true, TL0PICIDX: 7, HasTID: true, TID: 1, Keyframe: true, Width: 640, Height: 360,
				picIDOffset: 2, tl0Offset: 4}},
		{name: "narrow picture ID inter frame", in: vp8(0x55, false, 9, true, false, 0, 0),
			want: VP8Descriptor{Size: 5, Start: true, HasPictureID: true, PictureID: 0x55,
				HasTL0PICIDX: true, TL0PICIDX: 9, HasTID: true, TID: 1, picIDOffset: 2, tl0Offset: 3}},
		{name: "K only", in: []byte{0x80, 0x10, 0x1f, 0x01}, want: VP8Descriptor{Size: 3, HasKeyIdx: true, KeyIdx: 0x1f}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d VP8Descriptor
			err := ParseVP8(tt.in, &d)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && d != tt.want {
				t.Errorf("got %+v\nwant %+v", d, tt.want)
			}
		})
	}
}

func TestRewriteVP8(t *testing.T) {
	for _, wide := range []bool{true, false} {
		p := vp8(100, wide, 5, true, true, 320, 180)
		orig := bytes.Clone(p)
		var d VP8Descriptor
		if err := ParseVP8(p, &d); err != nil {
			t.Fatal(err)
		}
		RewriteVP8(p, &d, 0x7ffe, 200)
		var d2 VP8Descriptor
		if err := ParseVP8(p, &d2); err != nil {
			t.Fatal(err)
		}
		wantPic := uint16(0x7ffe)
		if !wide {
			wantPic = 0x7e
		}
		if d2.PictureID != wantPic || d2.TL0PICIDX != 200 || d2.Size != d.Size || d2.Width != 320 {
			t.Errorf("wide=%v: after rewrite %+v", wide, d2)
		}
		if !bytes.Equal(p[d.Size:], orig[d.Size:]) {
			t.Errorf("wide=%v: rewrite touched the VP8 payload", wide)
		}
	}
}

func TestKeyframeDetection(t *testing.T) {
	tests := []struct {
		name  string
		codec Codec
		in    []byte
		want  bool
	}{
		{"h264 IDR", CodecH264, []byte{0x65, 0x88}, true},
		{"h264 SPS", CodecH264, []byte{0x67, 0x42}, true},
		{"h264 non-IDR", CodecH264, []byte{0x41, 0x9a}, false},
		{"h264 STAP-A SPS PPS", CodecH264, []byte{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}, true},
		{"h264 STAP-A non-IDR", CodecH264, []byte{0x78, 0, 2, 0x41, 0x42}, false},
		{"h264 STAP-A truncated", CodecH264, []byte{0x78, 0, 9, 0x67}, false},
		{"h264 FU-A IDR start", CodecH264, []byte{0x7c, 0x85, 1}, true},
		{"h264 FU-A IDR middle", CodecH264, []byte{0x7c, 0x05, 1}, false},
		{"h264 FU-A short", CodecH264, []byte{0x7c}, false},
		{"vp9 key", CodecVP9, []byte{0x08}, true},
		{"vp9 inter", CodecVP9, []byte{0x48}, false},
		{"vp9 key layer 1", CodecVP9, []byte{0xa8, 0x01, 0x02}, false},
		{"vp9 key layer 0 wide pic", CodecVP9, []byte{0xa8, 0x81, 0x01, 0x00}, true},
		{"av1 new sequence", CodecAV1, []byte{0x08}, true},
		{"av1 continuation", CodecAV1, []byte{0x10}, false},
		{"vp8 key", CodecVP8, vp8(1, true, 0, true, true, 16, 16), true},
		{"opus", CodecOpus, []byte{0x00}, false},
		{"empty", CodecH264, nil, false},
	}
	for _, tt := range tests {
		if got := IsKeyframe(tt.codec, tt.in); got != tt.want {
			t.Errorf("%s: IsKeyframe = %v, want %v", tt.name, got, tt.want)
		}
	}
	if CodecFromMimeType("video/vp8") != CodecVP8 || CodecFromMimeType("audio/OPUS") != CodecOpus ||
		CodecFromMimeType("video/rtx") != CodecOther {
		t.Error("CodecFromMimeType")
	}
}

func TestParseAudioLevel(t *testing.T) {
	if _, _, err := ParseAudioLevel(nil); err == nil {
		t.Error("empty extension accepted")
	}
	lvl, v, err := ParseAudioLevel([]byte{0x80 | 33})
	if err != nil || lvl != 33 || !v {
		t.Errorf("got %d %v %v", lvl, v, err)
	}
}

func TestPacketCache(t *testing.T) {
	c := NewPacketCache(100)
	if c.Size() != 128 {
		t.Fatalf("size %d", c.Size())
	}
	buf := make([]byte, MaxPayloadSize)
	var meta PacketMeta
	for i := 0; i < 300; i++ {
		seq := uint16(65500 + i%65536)
		if !c.Put([]byte{byte(i), 1, 2}, &PacketMeta{SequenceNumber: seq, Timestamp: uint32(i)}) {
			t.Fatal("put refused")
		}
	}
	// The last 128 are there, older ones are not.
	for i := 0; i < 300; i++ {
		seq := uint16(65500 + i%65536)
		n, ok := c.Get(seq, buf, &meta)
		want := i >= 300-128
		if ok != want {
			t.Fatalf("seq %d: ok=%v want %v", seq, ok, want)
		}
		if ok && (n != 3 || buf[0] != byte(i) || meta.Timestamp != uint32(i)) {
			t.Fatalf("seq %d: wrong content", seq)
		}
	}
	if c.Put(make([]byte, MaxPayloadSize+1), &PacketMeta{}) {
		t.Error("oversized payload accepted")
	}
	if _, ok := c.Get(uint16(65500+299-65536), buf[:1], &meta); ok {
		t.Error("get into a too small buffer succeeded")
	}
}

func TestRewriterSwitch(t *testing.T) {
	r := NewRewriter(90000)
	now := int64(1e9)
	var lastSeq uint16
	var lastTS uint32
	check := func(seq uint16, ts uint32, at int64, wantOK bool) {
		t.Helper()
		s, tsOut, ok := r.Rewrite(seq, ts, at)
		if ok != wantOK {
			t.Fatalf("src %d: ok=%v want %v", seq, ok, wantOK)
		}
		if !ok {
			return
		}
		if s != lastSeq+1 && lastSeq != 0 {
			t.Fatalf("src %d: out seq %d after %d", seq, s, lastSeq)
		}
		if int32(tsOut-lastTS) < 0 {
			t.Fatalf("src %d: timestamp went back %d -> %d", seq, lastTS, tsOut)
		}
		lastSeq, lastTS = s, tsOut
	}
	// Source A from seq 1000, ts 5000, 3000 ticks per frame.
	for i := 0; i < 10; i++ {
		check(uint16(1000+i), uint32(5000+i*3000), now+int64(i)*33e6, true)
	}
	// Switch to source B with unrelated numbering, 33 ms later.
	r.Switch()
	check(60000, 123456789, now+10*33e6, true)
	if int32(lastTS-(5000+9*3000)) < 2900 {
		t.Errorf("timestamp after switch advanced only %d ticks", lastTS-(5000+9*3000))
	}
	check(59999, 123456789, now+10*33e6, false) // older than the switch point
	for i := 1; i < 5; i++ {
		check(uint16(60000+i), uint32(123456789+i*3000), now+int64(10+i)*33e6, true)
	}
	// Sequence wrap on source B.
	r.Switch()
	check(65535, 7, now+16*33e6, true)
	check(0, 3007, now+17*33e6, true)
	// The source restarts its numbering far away: the output continues.
	check(30000, 6007, now+18*33e6, true)
	check(30001, 9007, now+19*33e6, true)
	// Reordering within the window is not a restart.
	if s, _, ok := r.Rewrite(30003, 15007, now+21*33e6); !ok || s != lastSeq+2 {
		t.Fatalf("packet after a gap: seq %d ok %v, want %d", s, ok, lastSeq+2)
	}
	if s, _, ok := r.Rewrite(30002, 12007, now+21*33e6); !ok || s != lastSeq+1 {
		t.Fatalf("late packet: seq %d ok %v, want %d", s, ok, lastSeq+1)
	}
}

func TestRewriterVP8(t *testing.T) {
	r := NewRewriter(90000)
	d := VP8Descriptor{HasPictureID: true, PictureIDWide: true, PictureID: 0x7ffe, HasTL0PICIDX: true, TL0PICIDX: 254}
	pic, tl0 := r.RewriteVP8(&d)
	if pic != 0x7ffe || tl0 != 254 {
		t.Fatalf("first picture rewritten to %d/%d", pic, tl0)
	}
	d.PictureID, d.TL0PICIDX = 0x7fff, 255
	if pic, tl0 = r.RewriteVP8(&d); pic != 0x7fff || tl0 != 255 {
		t.Fatalf("got %d/%d", pic, tl0)
	}
	// A new source with its own numbering continues at +1 (with wrap).
	r.Switch()
	d = VP8Descriptor{HasPictureID: true, PictureID: 12, HasTL0PICIDX: true, TL0PICIDX: 40}
	if pic, tl0 = r.RewriteVP8(&d); pic != 0 || tl0 != 0 {
		t.Fatalf("after switch got %d/%d, want 0/0", pic, tl0)
	}
	d.PictureID, d.TL0PICIDX = 13, 41
	if pic, tl0 = r.RewriteVP8(&d); pic != 1 || tl0 != 1 {
		t.Fatalf("got %d/%d, want 1/1", pic, tl0)
	}
}

func TestThrottle(t *testing.T) {
	th := NewThrottle(int64(time.Second))
	if !th.Allow(10) || th.Allow(10+5e8) || !th.Allow(10+1e9) {
		t.Error("throttle lets through the wrong events")
	}
}

func TestThrottleSatisfied(t *testing.T) {
	th := NewThrottle(int64(time.Second))
	th.Satisfied(5, 100) // nothing allowed yet: no effect
	if !th.Allow(10) {
		t.Fatal("first event refused")
	}
	th.Satisfied(200, 100) // answered at 200: next allowed from 300
	if th.Allow(299) || !th.Allow(300) {
		t.Error("after Satisfied the next event is not allowed at now+guard")
	}
	th.Satisfied(310, 5e9) // a guard longer than the interval never delays
	if !th.Allow(300 + 1e9) {
		t.Error("Satisfied delayed the next event")
	}
}

func TestRateMeter(t *testing.T) {
	var m RateMeter
	for i := int64(0); i <= 100; i++ {
		m.Add(1250, 1+i*1e7) // 1250 bytes every 10 ms = 1 Mbit/s
	}
	if r := m.Rate(1 + 100*1e7); r < 900_000 || r > 1_100_000 {
		t.Errorf("rate %d, want about 1 Mbit/s", r)
	}
	if r := m.Rate(1 + 100*1e7 + 3e9); r != 0 {
		t.Errorf("silent stream rate %d", r)
	}
}

func TestSpeakerDetector(t *testing.T) {
	d := NewSpeakerDetector(SpeakerConfig{})
	a, b := d.Add("a"), d.Add("b")
	if d.Add("a") != a {
		t.Fatal("Add returned a new meter for an existing id")
	}
	feed := func(la, lb uint8, ticks int) (active []string, dom string, changed bool) {
		for i := 0; i < ticks; i++ {
			for k := 0; k < 10; k++ {
				a.Observe(la)
				b.Observe(lb)
			}
			var c bool
			active, dom, c = d.Tick()
			changed = changed || c
		}
		return
	}
	if active, dom, _ := feed(127, 127, 5); len(active) != 0 || dom != "" {
		t.Fatalf("silence: active %v dominant %q", active, dom)
	}
	if active, dom, changed := feed(20, 127, 5); dom != "a" || len(active) != 1 || !changed {
		t.Fatalf("a speaks: active %v dominant %q changed %v", active, dom, changed)
	}
	// b barely louder than a: no switch (hysteresis).
	if _, dom, _ := feed(20, 19, 10); dom != "a" {
		t.Fatalf("dominant flipped to %q on a 1 dB difference", dom)
	}
	// a stops, b speaks: b takes over.
	if active, dom, _ := feed(127, 30, 10); dom != "b" || len(active) != 1 || active[0] != "b" {
		t.Fatalf("b speaks: active %v dominant %q", active, dom)
	}
	// Silence keeps the last dominant speaker.
	if _, dom, _ := feed(127, 127, 10); dom != "b" {
		t.Fatalf("after silence dominant %q", dom)
	}
	d.Remove("b")
	if _, dom, changed := d.Tick(); dom != "" || !changed {
		t.Fatalf("after removal dominant %q changed %v", dom, changed)
	}
}

// feedback builds a TWCC feedback for packets base..base+n-1 where lost[i]
// marks losses and arrival offsets grow by gap+extra*i microseconds.
func feedback(base uint16, n int, lost func(int) bool, deltaUs func(int) int64) *rtcp.TransportLayerCC {
	return feedbackAt(100, base, n, lost, deltaUs)
}

// feedbackAt is feedback with the reference time (64 ms units) given.
func feedbackAt(ref uint32, base uint16, n int, lost func(int) bool, deltaUs func(int) int64) *rtcp.TransportLayerCC {
	fb := &rtcp.TransportLayerCC{BaseSequenceNumber: base, PacketStatusCount: uint16(n), ReferenceTime: ref}
	for i := 0; i < n; i++ {
		sym := uint16(rtcp.TypeTCCPacketReceivedSmallDelta)
		if lost(i) {
			sym = rtcp.TypeTCCPacketNotReceived
		} else {
			fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: deltaUs(i)})
		}
		fb.PacketChunks = append(fb.PacketChunks, &rtcp.RunLengthChunk{PacketStatusSymbol: sym, RunLength: 1})
	}
	return fb
}

func TestBandwidthEstimator(t *testing.T) {
	run := func(lossEvery int, extraDelayUs int64) int {
		e := NewBandwidthEstimator(EstimatorConfig{Initial: 1_000_000, Min: 50_000, Max: 5_000_000})
		now := int64(1e9)
		queue := int64(0) // queueing delay built up so far, microseconds
		for round := 0; round < 30; round++ {
			base := uint16(0)
			for i := 0; i < 64; i++ { // 64 packets of 1200 bytes per 128 ms: 4.8 Mbit/s
				s := e.Sent(1200, now+int64(i)*2e6)
				if i == 0 {
					base = s
				}
			}
			// Reference time: this round's first send time, in 64 ms units
			// (the receiver's clock runs in step with ours, 20 ms later).
			ref := uint32(now / 64e6)
			first := (now + 20e6 - int64(ref)*64e6) / 1000
			e.OnFeedback(feedbackAt(ref, base, 64, func(i int) bool { return lossEvery > 0 && i%lossEvery == 0 },
				func(i int) int64 {
					queue += extraDelayUs
					if i == 0 {
						return first + queue
					}
					return 2000 + extraDelayUs
				}), now+128e6+20e6)
			now += 128e6
		}
		return e.Estimate()
	}
	clean := run(0, 0)
	lossy := run(4, 0)     // 25% loss
	delayed := run(0, 400) // every packet 0.4 ms later than the last: a growing queue
	t.Logf("estimates: clean %d, 25%% loss %d, growing delay %d", clean, lossy, delayed)
	if clean < 1_000_000 {
		t.Errorf("clean path estimate fell to %d", clean)
	}
	if lossy >= 500_000 {
		t.Errorf("25%% loss kept the estimate at %d", lossy)
	}
	if delayed >= 1_000_000 {
		t.Errorf("growing delay kept the estimate at %d", delayed)
	}
}

// TestBandwidthEstimatorSchedulingJitter: on a busy machine the receiver
// (and our own send path) run late by a varying amount, so the one-way
// delay jumps up and down by tens of milliseconds with no queue growing on
// the path. Measured in a three-way call on a loaded 2-core machine
// (issue 17), the delay trend swung between -66 and +175 ms and a fixed
// 10 ms threshold called that overuse every few seconds, each time cutting
// the estimate to 85% of a small acknowledged rate: every subscriber sat at
// the 100 kbit/s floor and the allocator paused video most of the time.
// Such zero-mean noise must not collapse the estimate, while a steadily
// growing queue still cuts it (TestBandwidthEstimator).
func TestBandwidthEstimatorSchedulingJitter(t *testing.T) {
	e := NewBandwidthEstimator(EstimatorConfig{Initial: 1_000_000, Min: 50_000, Max: 5_000_000})
	rng := rand.New(rand.NewPCG(17, 7))
	now := int64(1e9)
	late := int64(0) // how late this round's packets are read, microseconds
	for round := 0; round < 150; round++ {
		base := uint16(0)
		for i := 0; i < 32; i++ { // 32 packets of 100 bytes per 128 ms: 200 kbit/s
			s := e.Sent(100, now+int64(i)*4e6)
			if i == 0 {
				base = s
			}
		}
		late = rng.Int64N(60_000)
		ref := uint32(now / 64e6)
		first := (now+20e6-int64(ref)*64e6)/1000 + late
		e.OnFeedback(feedbackAt(ref, base, 32, func(int) bool { return false }, func(i int) int64 {
			if i == 0 {
				return first
			}
			return 4000
		}), now+128e6+60e6)
		now += 128e6
	}
	got := e.Estimate()
	t.Logf("estimate after 19 s of 200 kbit/s read 0-60 ms late at random: %d", got)
	if got < 500_000 {
		t.Errorf("scheduling jitter cut the estimate to %d although nothing queued", got)
	}
}
