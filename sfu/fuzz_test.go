package sfu

import (
	"testing"

	"github.com/pion/rtp"

	"github.com/switchboard-chat/switchboard/internal/testkit/rtcclient"
	"github.com/switchboard-chat/switchboard/media"
)

// FuzzForward runs arbitrary bytes, as a publisher could send them, through
// the SFU's own packet handling: RTP header and padding parse, payload
// descriptor and audio level parse for each codec, cache, layer choice,
// rewrite, write, and a NACK answer. Nothing may panic, and what is written
// must be a well-formed RTP packet.
func FuzzForward(f *testing.F) {
	seed := func(payload []byte, ext bool) []byte {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, SSRC: 1}, Payload: payload}
		if ext {
			_ = p.SetExtension(1, []byte{0x85})
		}
		b, _ := p.Marshal()
		return b
	}
	f.Add(seed(rtcclient.VP8Payload(make([]byte, 64), 3, 1, true, true, 320, 180, 40), false), uint8(media.CodecVP8))
	f.Add(seed([]byte{0x78, 0, 2, 0x67, 0x42, 0, 1, 0x65}, false), uint8(media.CodecH264))
	f.Add(seed([]byte{1, 2, 3}, true), uint8(media.CodecOpus))
	f.Add([]byte{0xa0, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 9, 9, 2}, uint8(media.CodecVP9))
	f.Fuzz(func(t *testing.T, pkt []byte, codec uint8) {
		up, d, w := benchDownTrack(t, 16)
		up.mcodec = media.Codec(codec % 6)
		var hdr rtp.Header
		var meta media.PacketMeta
		payload, ok := parsePacket(pkt, &hdr, &meta, up.mcodec, extIDs{level: 1, orientation: 1})
		if !ok {
			return
		}
		if len(payload) > len(pkt) {
			t.Fatal("payload longer than the packet")
		}
		meta.Keyframe = true
		if !up.layers[0].cache.Put(payload, &meta) {
			return
		}
		d.forward(0, meta.SequenceNumber)
		d.retransmit(d.rw.LastSequenceNumber())
		if w.last == 0 {
			return
		}
		var out rtp.Packet
		if err := out.Unmarshal(w.buf[:w.last]); err != nil {
			t.Fatalf("written packet does not parse: %v", err)
		}
	})
}
