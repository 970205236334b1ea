package callclient

import "github.com/pion/webrtc/v4"

// NewAPI is the pion API every bench client uses: default codecs and
// interceptors, the audio-level header extension, ICE on loopback UDP.
func NewAPI() (*webrtc.API, error) { return newAPI() }

// VP8KeyframeStart reports whether an RTP payload is the first packet of
// a VP8 key frame (see vp8KeyframeStart).
func VP8KeyframeStart(payload []byte) bool { return vp8KeyframeStart(payload) }

// VP8Frame is the payloads (two packets) of synthetic VP8 frame number
// frame, a key frame when key: the same frames the native publishers send.
func VP8Frame(frame int, key bool) [][]byte {
	out := make([][]byte, 0, 2)
	for k := range 2 {
		// X and I set, 15-bit picture ID (RFC 7741 section 4.2).
		pl := []byte{0x80, 0x80, 0x80 | byte(frame>>8)&0x7f, byte(frame)}
		if k == 0 {
			pl[0] |= 0x10 // S: start of partition
			if key {
				// VP8 key frame header (RFC 6386 section 9.1): P=0,
				// start code, 320x180.
				pl = append(pl, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00)
			} else {
				pl = append(pl, 0x11, 0x02, 0x00)
			}
		}
		for len(pl) < 400 {
			pl = append(pl, byte(len(pl)))
		}
		out = append(out, pl)
	}
	return out
}

// MinKeyframeRequestInterval is how long after an honoured key frame
// request a browser's encoder ignores the next ones (libwebrtc
// EncoderRtcpFeedback).
const MinKeyframeRequestInterval = minKeyframeRequestInterval
