package media

// AudioLevelURI is the SDP extmap URI of the client-to-mixer audio level
// header extension (RFC 6464).
const AudioLevelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

// ParseAudioLevel reads the one-byte RFC 6464 audio level extension
// (section 3): the V bit (voice activity) and the level in -dBov, 0 (loudest)
// to 127 (silence). Two-byte header form may pad it; only the first byte
// counts.
func ParseAudioLevel(ext []byte) (level uint8, voice bool, err error) {
	if len(ext) < 1 {
		return 0, false, ErrInvalidExtension
	}
	return ext[0] & 0x7f, ext[0]&0x80 != 0, nil
}

// VideoOrientationURI is the SDP extmap URI of the coordination of video
// orientation extension (3GPP TS 26.114 section 7.4.5): one byte whose low
// bits give the camera and rotation, which phones send instead of rotating
// frames. The SFU passes it through.
const VideoOrientationURI = "urn:3gpp:video-orientation"
