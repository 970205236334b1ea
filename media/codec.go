package media

import "strings"

// Codec names the payload formats whose headers this package reads.
type Codec uint8

// Codecs known to the RTP plane. CodecOther is forwarded without payload
// inspection (it never reports a key frame).
const (
	CodecOther Codec = iota
	CodecOpus
	CodecVP8
	CodecVP9
	CodecH264
	CodecAV1
)

// CodecFromMimeType maps an SDP mime type such as "video/VP8" to a Codec,
// case-insensitively.
func CodecFromMimeType(mime string) Codec {
	switch {
	case strings.EqualFold(mime, "audio/opus"):
		return CodecOpus
	case strings.EqualFold(mime, "video/VP8"):
		return CodecVP8
	case strings.EqualFold(mime, "video/VP9"):
		return CodecVP9
	case strings.EqualFold(mime, "video/H264"):
		return CodecH264
	case strings.EqualFold(mime, "video/AV1"):
		return CodecAV1
	}
	return CodecOther
}

// IsVideo reports whether c is a video codec.
func (c Codec) IsVideo() bool {
	return c == CodecVP8 || c == CodecVP9 || c == CodecH264 || c == CodecAV1
}

// IsKeyframe reports whether an RTP payload of codec c starts a key frame,
// that is whether a decoder can start from this packet.
func IsKeyframe(c Codec, payload []byte) bool {
	switch c {
	case CodecVP8:
		var d VP8Descriptor
		return ParseVP8(payload, &d) == nil && d.Keyframe
	case CodecVP9:
		return VP9IsKeyframe(payload)
	case CodecH264:
		return H264IsKeyframe(payload)
	case CodecAV1:
		return AV1IsKeyframe(payload)
	}
	return false
}

// H264 NAL unit types (RFC 6184 section 5.4 and ITU-T H.264 table 7-1).
const (
	h264NALIDR   = 5
	h264NALSPS   = 7
	h264NALSTAPA = 24
	h264NALFUA   = 28
)

// H264IsKeyframe reports whether an H.264 RTP payload (RFC 6184) carries
// the start of an IDR picture or a sequence parameter set: a single NAL unit
// packet (section 5.6), a STAP-A aggregate (section 5.7.1) containing one,
// or the first fragment of an FU-A (section 5.8).
func H264IsKeyframe(payload []byte) bool {
	if len(payload) < 1 {
		return false
	}
	switch t := payload[0] & 0x1f; t {
	case h264NALIDR, h264NALSPS:
		return true
	case h264NALSTAPA:
		p := payload[1:]
		for len(p) >= 3 {
			size := int(p[0])<<8 | int(p[1])
			p = p[2:]
			if size == 0 || size > len(p) {
				return false
			}
			if nt := p[0] & 0x1f; nt == h264NALIDR || nt == h264NALSPS {
				return true
			}
			p = p[size:]
		}
	case h264NALFUA:
		if len(payload) < 2 {
			return false
		}
		fu := payload[1]
		start := fu&0x80 != 0
		nt := fu & 0x1f
		return start && (nt == h264NALIDR || nt == h264NALSPS)
	}
	return false
}

// VP9IsKeyframe reports whether a VP9 RTP payload (RFC 9628 section 4.2)
// starts a key frame: P (inter-picture predicted) clear, B (start of frame)
// set, and spatial layer 0 when layer indices are present.
func VP9IsKeyframe(payload []byte) bool {
	if len(payload) < 1 {
		return false
	}
	b := payload[0]
	predicted := b&0x40 != 0
	begin := b&0x08 != 0
	if predicted || !begin {
		return false
	}
	if b&0x20 == 0 { // no layer indices: single spatial layer
		return true
	}
	i := 1
	if b&0x80 != 0 { // I: picture ID, 7 or 15 bits
		if len(payload) <= i {
			return false
		}
		if payload[i]&0x80 != 0 {
			i += 2
		} else {
			i++
		}
	}
	if len(payload) <= i {
		return false
	}
	sid := (payload[i] >> 1) & 0x07
	return sid == 0
}

// AV1IsKeyframe reports whether an AV1 RTP payload starts a new coded video
// sequence: the N bit of the aggregation header (AV1 RTP specification
// section 4.4), which senders set on the first packet of a key frame.
func AV1IsKeyframe(payload []byte) bool {
	return len(payload) >= 1 && payload[0]&0x08 != 0
}
