package media

import (
	"encoding/hex"
	"testing"
)

// SPS NAL units written by the x264 encoder (x264 --profile P --input-res
// WxH --frames 1), covering High and Baseline profiles, cropping and field
// coding.
var spsFixtures = []struct {
	name string
	hex  string
	w, h uint16
}{
	{"1280x720 high", "6764001facd9405005ba1000000300100000030328f1831960", 1280, 720},
	{"640x360 baseline", "6742c01ed900a02ff961000003000100000300328f162e48", 640, 360},
	{"320x180 high", "6764000cacd941419f9e1000000300100000030328f1429960", 320, 180},
	{"1920x1080 high interlaced", "67640028acd94078044fdc20000003002000000653e2c5b2c0", 1920, 1080},
	{"642x362 main", "674d401eeca05217f11242000003000200000300651e2c5b2c", 642, 362},
}

func TestH264SPSSize(t *testing.T) {
	for _, f := range spsFixtures {
		sps, err := hex.DecodeString(f.hex)
		if err != nil {
			t.Fatal(err)
		}
		w, h, ok := H264SPSSize(sps)
		if !ok || w != f.w || h != f.h {
			t.Errorf("%s: got %dx%d ok=%v", f.name, w, h, ok)
		}
		// The same SPS in a STAP-A with a PPS, as browsers send key frames.
		stap := append([]byte{0x78, byte(len(sps) >> 8), byte(len(sps))}, sps...)
		stap = append(stap, 0, 2, 0x68, 0xce)
		if w, h, ok := H264PayloadSize(stap); !ok || w != f.w || h != f.h {
			t.Errorf("%s in STAP-A: got %dx%d ok=%v", f.name, w, h, ok)
		}
		// Truncated: never a size.
		if _, _, ok := H264SPSSize(sps[:6]); ok {
			t.Errorf("%s: truncated SPS gave a size", f.name)
		}
	}
	if _, _, ok := H264PayloadSize([]byte{0x65, 0x88}); ok {
		t.Error("IDR slice gave a size")
	}
}
