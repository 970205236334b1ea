package media

import "testing"

func BenchmarkParseVP8(b *testing.B) {
	p := vp8(0x1234, true, 7, true, true, 640, 360)
	var d VP8Descriptor
	b.ReportAllocs()
	for b.Loop() {
		_ = ParseVP8(p, &d)
	}
}

func BenchmarkH264Keyframe(b *testing.B) {
	p := []byte{0x78, 0, 2, 0x09, 0xf0, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce, 0, 3, 0x65, 0x88, 0x84}
	b.ReportAllocs()
	for b.Loop() {
		_ = H264IsKeyframe(p)
	}
}

// BenchmarkCachePutGet is the per-packet cache traffic: one Put on receive
// and one Get per subscriber.
func BenchmarkCachePutGet(b *testing.B) {
	c := NewPacketCache(512)
	payload := make([]byte, 1100)
	dst := make([]byte, MaxPayloadSize)
	var meta PacketMeta
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	seq := uint16(0)
	for b.Loop() {
		seq++
		c.Put(payload, &PacketMeta{SequenceNumber: seq})
		c.Get(seq, dst, &meta)
	}
}

// BenchmarkRewrite is the per-packet rewrite: sequence number, timestamp,
// VP8 picture ID and TL0PICIDX.
func BenchmarkRewrite(b *testing.B) {
	r := NewRewriter(90000)
	p := vp8(0x1234, true, 7, true, false, 0, 0)
	var d VP8Descriptor
	_ = ParseVP8(p, &d)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		_, _, _ = r.Rewrite(uint16(i), uint32(i*3000), int64(i)*1e6)
		pic, tl0 := r.RewriteVP8(&d)
		RewriteVP8(p, &d, pic, tl0)
	}
}

func BenchmarkEstimatorSent(b *testing.B) {
	e := NewBandwidthEstimator(EstimatorConfig{})
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		i++
		e.Sent(1200, i)
	}
}

func BenchmarkLevelObserve(b *testing.B) {
	var l LevelMeter
	b.ReportAllocs()
	for b.Loop() {
		l.Observe(40)
	}
}
