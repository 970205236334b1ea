package callclient

import (
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-chat/switchboard/internal/testkit/rtcclient"
)

// NewAPI is the pion API every bench client uses: default codecs and
// interceptors, the audio-level header extension, ICE on loopback UDP
// (the test kit's rtcclient.NewAPI).
func NewAPI() (*webrtc.API, error) { return rtcclient.NewAPI(nil, false) }

// VP8KeyframeStart reports whether an RTP payload is the first packet of
// a VP8 key frame.
func VP8KeyframeStart(payload []byte) bool { return rtcclient.VP8KeyframeStart(payload) }

// VP8Frame is the payloads (two packets) of synthetic VP8 frame number
// frame, a key frame when key: the same frames the native publishers send.
func VP8Frame(frame int, key bool) [][]byte { return rtcclient.VP8Frame(frame, key) }

// MinKeyframeRequestInterval is how long after an honoured key frame
// request a browser's encoder ignores the next ones (libwebrtc
// EncoderRtcpFeedback).
const MinKeyframeRequestInterval = rtcclient.MinKeyframeRequestInterval
