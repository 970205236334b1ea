package media

import (
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// FuzzParseRTPFields checks that the receive side's header reader never
// panics or reads out of bounds, and that for packets pion's parser
// accepts it reads the same sequence number, timestamp, SSRC and
// transport-wide sequence number.
func FuzzParseRTPFields(f *testing.F) {
	p := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 7, Timestamp: 9, SSRC: 11}, Payload: []byte{1}}
	_ = p.SetExtension(3, []byte{0x01, 0x02})
	raw, _ := p.Marshal()
	f.Add(raw, uint8(3))
	p.ExtensionProfile = 0x1000
	raw, _ = p.Marshal()
	f.Add(raw, uint8(3))
	f.Add([]byte{0x90, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 9}, uint8(1))
	f.Add([]byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, id uint8) {
		var got RTPFields
		if !ParseRTPFields(b, id, &got) {
			return
		}
		var h rtp.Header
		if _, err := h.Unmarshal(b); err != nil {
			return
		}
		if got.SequenceNumber != h.SequenceNumber || got.Timestamp != h.Timestamp || got.SSRC != h.SSRC {
			t.Fatalf("read %+v, pion read %d %d %d", got, h.SequenceNumber, h.Timestamp, h.SSRC)
		}
		if id == 0 || id > 14 && h.ExtensionProfile == 0xBEDE {
			return
		}
		e := h.GetExtension(id)
		if len(e) >= 2 && (!got.HasTransportSeq || got.TransportSeq != uint16(e[0])<<8|uint16(e[1])) {
			t.Fatalf("transport-wide sequence number %+v, pion's extension %x", got, e)
		}
	})
}

// FuzzForEachSenderReport checks that the sender report walker never
// panics on any compound packet.
func FuzzForEachSenderReport(f *testing.F) {
	f.Add([]byte{0x80, 200, 0, 6, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x80, 200, 0, 1, 0, 0, 0, 1})
	f.Add([]byte{0x80, 201, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		ForEachSenderReport(b, func(uint32, uint64) {})
	})
}

// FuzzTWCCRecorder records arbitrary transport-wide sequence numbers and
// arrival steps (from the network: a sender picks the numbers) and checks
// that every feedback packet written parses with pion's parser and
// reports at most the packets recorded.
func FuzzTWCCRecorder(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 2, 5, 0, 9, 200, 255, 255, 3})
	f.Add([]byte{255, 255, 0, 0, 0, 0, 128, 0, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r TWCCRecorder
		now := int64(1e15)
		recorded := 0
		var buf []byte
		for i := 0; i+2 < len(b); i += 3 {
			seq := uint16(b[i])<<8 | uint16(b[i+1])
			now += int64(b[i+2]) * int64(b[i+2]) * 1e5 // up to 6.5 s apart
			r.Record(seq, now)
			recorded++
			if b[i+2]%5 == 0 {
				for k := 0; k < 200 && r.Pending(); k++ {
					buf = r.AppendFeedback(buf[:0], 1, 2)
					if len(buf) == 0 {
						break
					}
					if len(buf)%4 != 0 {
						t.Fatalf("feedback of %d bytes", len(buf))
					}
					if _, err := rtcp.Unmarshal(buf); err != nil {
						t.Fatalf("feedback %x: %v", buf, err)
					}
				}
			}
		}
	})
}
