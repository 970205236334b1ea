package media

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/pion/rtcp"
)

// FuzzParseVP8 checks that the VP8 descriptor parser never panics or reads
// out of bounds, that rewriting stays inside the descriptor, and that a
// rewritten descriptor parses back to the values written.
func FuzzParseVP8(f *testing.F) {
	f.Add(vp8(0x1234, true, 7, true, true, 640, 360))
	f.Add(vp8(5, false, 1, true, false, 0, 0))
	f.Add([]byte{0x80, 0xf0, 0x81})
	f.Add([]byte{0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d VP8Descriptor
		if err := ParseVP8(b, &d); err != nil {
			return
		}
		if d.Size > len(b) {
			t.Fatalf("descriptor size %d beyond payload %d", d.Size, len(b))
		}
		orig := bytes.Clone(b)
		RewriteVP8(b, &d, d.PictureID^0x2a5, d.TL0PICIDX+3)
		if !bytes.Equal(b[d.Size:], orig[d.Size:]) {
			t.Fatal("rewrite changed bytes after the descriptor")
		}
		var d2 VP8Descriptor
		if err := ParseVP8(b, &d2); err != nil {
			t.Fatalf("rewritten payload no longer parses: %v", err)
		}
		wantPic := d.PictureID ^ 0x2a5
		if !d.PictureIDWide {
			wantPic &= 0x7f
		}
		if d.HasPictureID && d2.PictureID != wantPic {
			t.Fatalf("picture ID %d after rewrite, want %d", d2.PictureID, wantPic)
		}
		if d.HasTL0PICIDX && d2.TL0PICIDX != d.TL0PICIDX+3 {
			t.Fatal("TL0PICIDX not rewritten")
		}
		if d2.Size != d.Size || d2.Keyframe != d.Keyframe {
			t.Fatal("rewrite changed the descriptor layout")
		}
	})
}

// FuzzKeyframe runs every codec's key frame detection on arbitrary payloads.
func FuzzKeyframe(f *testing.F) {
	f.Add([]byte{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce})
	f.Add([]byte{0x7c, 0x85, 1})
	f.Add([]byte{0xa8, 0x81, 0x01, 0x00})
	f.Add([]byte{0x08})
	for _, sps := range spsFixtures {
		b, _ := hex.DecodeString(sps.hex)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for c := CodecOther; c <= CodecAV1; c++ {
			IsKeyframe(c, b)
		}
		_, _, _ = ParseAudioLevel(b)
		if w, h, ok := H264PayloadSize(b); ok && (w == 0 || h == 0) {
			t.Fatalf("H.264 size %dx%d reported valid", w, h)
		}
	})
}

// FuzzTWCCFeedback feeds arbitrary RTCP (as a subscriber could send) to the
// bandwidth estimator, which must stay within its bounds.
func FuzzTWCCFeedback(f *testing.F) {
	seed, _ := feedback(0, 5, func(i int) bool { return i == 2 }, func(int) int64 { return 1000 }).Marshal()
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		pkts, err := rtcp.Unmarshal(b)
		if err != nil {
			return
		}
		e := NewBandwidthEstimator(EstimatorConfig{Min: 10_000, Max: 1_000_000})
		for i := 0; i < 20; i++ {
			e.Sent(1000, int64(i)*1e6)
		}
		for _, p := range pkts {
			if fb, ok := p.(*rtcp.TransportLayerCC); ok {
				e.OnFeedback(fb, 1e9)
			}
		}
		if est := e.Estimate(); est < 10_000 || est > 1_000_000 {
			t.Fatalf("estimate %d out of bounds", est)
		}
	})
}
