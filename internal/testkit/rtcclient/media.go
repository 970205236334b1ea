package rtcclient

import (
	"encoding/binary"
	"iter"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// Track is what the client received on one remote track.
type Track struct {
	ID, StreamID string
	Kind         webrtc.RTPCodecType
	MimeType     string
	Packets      atomic.Int64
	Ended        atomic.Bool // the remote track ended (ReadRTP failed)

	// Mu guards the fields below.
	Mu sync.Mutex
	// FirstPacket is when the first packet arrived; FirstKeyframe when the
	// first packet of a VP8 key frame did (the first decodable frame).
	FirstPacket, FirstKeyframe time.Time
	// BeforeKeyframe counts VP8 packets before the first key frame: frames
	// a subscriber cannot decode.
	BeforeKeyframe int
	// FirstKey says the first video packet started a VP8 key frame.
	FirstKey bool
	// KeyWidths is the width of each VP8 key frame received, in order.
	KeyWidths []uint16
	// SSRCs is every SSRC seen.
	SSRCs map[uint32]bool
	// Seqs and Timestamps are every packet's, with Config.Record.
	Seqs       []uint16
	Timestamps []uint32
}

// Track returns the remote track trackID, nil before it arrived.
func (c *Client) Track(trackID string) *Track {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recv[trackID]
}

// Tracks returns every remote track so far.
func (c *Client) Tracks() []*Track {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Track, 0, len(c.recv))
	for _, t := range c.recv {
		out = append(out, t)
	}
	return out
}

// Received returns the packets received so far on the audio and on the
// video tracks of stream streamID.
func (c *Client) Received(streamID string) (audio, video int64) {
	for _, t := range c.Tracks() {
		if t.StreamID != streamID {
			continue
		}
		if t.Kind == webrtc.RTPCodecTypeAudio {
			audio += t.Packets.Load()
		} else {
			video += t.Packets.Load()
		}
	}
	return audio, video
}

func (c *Client) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	t := &Track{ID: tr.ID(), StreamID: tr.StreamID(), Kind: tr.Kind(), MimeType: tr.Codec().MimeType,
		SSRCs: map[uint32]bool{}}
	c.mu.Lock()
	c.recv[tr.ID()] = t
	c.mu.Unlock()
	vp8 := t.Kind == webrtc.RTPCodecTypeVideo && strings.EqualFold(t.MimeType, webrtc.MimeTypeVP8)
	c.wg.Go(func() {
		defer t.Ended.Store(true)
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			t.Mu.Lock()
			now := time.Now()
			if t.FirstPacket.IsZero() {
				t.FirstPacket = now
			}
			if c.cfg.Record {
				t.Seqs = append(t.Seqs, pkt.SequenceNumber)
				t.Timestamps = append(t.Timestamps, pkt.Timestamp)
			}
			t.SSRCs[pkt.SSRC] = true
			if vp8 {
				if w, key := VP8KeyframeWidth(pkt.Payload); key {
					t.KeyWidths = append(t.KeyWidths, w)
					if t.FirstKeyframe.IsZero() {
						t.FirstKeyframe = now
						t.FirstKey = t.Packets.Load() == 0
					}
				} else if t.FirstKeyframe.IsZero() {
					t.BeforeKeyframe++
				}
			}
			t.Mu.Unlock()
			t.Packets.Add(1)
		}
	})
}

// VP8KeyframeWidth reports whether payload is the first packet of a VP8
// key frame, the start of partition 0 (RFC 7741 section 4.2: S set, PID 0)
// whose payload header has P clear (RFC 6386 section 9.1), and the frame
// width from its key frame header.
func VP8KeyframeWidth(payload []byte) (width uint16, key bool) {
	var v codecs.VP8Packet
	if _, err := v.Unmarshal(payload); err != nil {
		return 0, false
	}
	p := v.Payload
	if v.S != 1 || v.PID != 0 || len(p) < 10 || p[0]&0x01 != 0 {
		return 0, false
	}
	return binary.LittleEndian.Uint16(p[6:8]) & 0x3fff, true
}

// VP8KeyframeStart reports whether payload is the first packet of a VP8
// key frame.
func VP8KeyframeStart(payload []byte) bool {
	_, key := VP8KeyframeWidth(payload)
	return key
}

func (c *Client) audioLevelID() uint8 {
	if id := c.audioExt.Load(); id != 0 {
		return uint8(id)
	}
	for _, tr := range c.pc.GetTransceivers() {
		if tr.Sender() == nil || tr.Kind() != webrtc.RTPCodecTypeAudio {
			continue
		}
		for _, e := range tr.Sender().GetParameters().HeaderExtensions {
			if e.URI == AudioLevelURI {
				c.audioExt.Store(uint32(e.ID))
				return uint8(e.ID)
			}
		}
	}
	return 0
}

// sendAudio sends 50 packets/s of Opus-sized payloads with the RFC 6464
// audio level (its extension ID is the one negotiated; pion assigns IDs in
// registration order).
func (c *Client) sendAudio(tr *webrtc.TrackLocalStaticRTP) {
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: make([]byte, 60)}
	for i := 0; ; i++ {
		select {
		case <-c.stopSend:
			return
		case <-tk.C:
		}
		pkt.SequenceNumber = uint16(i)
		pkt.Timestamp = uint32(i * 960)
		pkt.Extensions, pkt.Extension = nil, false
		if id := c.audioLevelID(); id != 0 {
			_ = pkt.SetExtension(id, []byte{c.cfg.AudioLevel & 0x7f})
		}
		_ = tr.WriteRTP(pkt)
	}
}

// frameInterval is the video frame interval: 30 frames/s.
const frameInterval = 33 * time.Millisecond

// sendVideo sends 30 frames/s on each layer (see Config.VideoKbps), a key
// frame first, every KeyframeInterval and after each PLI honoured.
func (c *Client) sendVideo(layers []*webrtc.TrackLocalStaticRTP, rids []string, codec string, simSender *webrtc.RTPSender) {
	// pion does not add the RTP stream ID (RFC 8852) to simulcast packets
	// by itself: put the mid and rid header extensions in.
	var midID, ridID uint8
	var mid string
	if simSender != nil {
		for _, e := range simSender.GetParameters().HeaderExtensions {
			switch e.URI {
			case "urn:ietf:params:rtp-hdrext:sdes:mid":
				midID = uint8(e.ID)
			case "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id":
				ridID = uint8(e.ID)
			}
		}
		for _, tr := range c.pc.GetTransceivers() {
			if tr.Sender() == simSender {
				mid = tr.Mid()
			}
		}
	}
	every := 0
	if ki := c.cfg.KeyframeInterval; ki > 0 {
		every = max(1, int(ki/frameInterval))
	}
	tk := time.NewTicker(frameInterval)
	defer tk.Stop()
	seq := make([]uint16, len(layers))
	buf := make([]byte, 1500)
	for frame := 0; ; frame++ {
		select {
		case <-c.stopSend:
			return
		case <-tk.C:
		}
		key := frame == 0 || (every > 0 && frame%every == 0)
		if c.keyReq.Swap(false) {
			key = true
		}
		for i, tr := range layers {
			for last, payload := range c.framePayloads(buf, codec, frame, i, key) {
				pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq[i],
					Timestamp: uint32(frame * 3000), Marker: last}, Payload: payload}
				if midID != 0 && ridID != 0 {
					_ = pkt.SetExtension(midID, []byte(mid))
					_ = pkt.SetExtension(ridID, []byte(rids[i]))
				}
				seq[i]++
				_ = tr.WriteRTP(pkt)
			}
		}
	}
}

// framePayloads yields the packets of frame on layer, each with whether it
// is the frame's last: two 400-byte VP8 packets without VideoKbps, else the
// layer's share of its rate. The payloads share buf.
func (c *Client) framePayloads(buf []byte, codec string, frame, layer int, key bool) iter.Seq2[bool, []byte] {
	return func(yield func(bool, []byte) bool) {
		if c.cfg.VideoKbps == 0 {
			for k, pl := range VP8Frame(frame, key) {
				if !yield(k == 1, pl) {
					return
				}
			}
			return
		}
		rate := c.cfg.VideoKbps * 1000
		for range layer {
			rate *= 3
		}
		frameBytes := rate / 8 / 30
		if key {
			frameBytes *= 3
		}
		npk := (frameBytes + 999) / 1000
		w := uint16(320 << layer)
		for k := range npk {
			size := min(1000, frameBytes-k*1000) + 20
			var payload []byte
			switch codec {
			case webrtc.MimeTypeH264:
				payload = H264Payload(buf, k == 0, key, size)
			case webrtc.MimeTypeVP9:
				payload = VP9Payload(buf, k == 0, k == npk-1, key, size)
			case webrtc.MimeTypeAV1:
				payload = AV1Payload(buf, k == 0, key, size)
			default:
				payload = VP8Payload(buf, uint16(frame)&0x7fff, uint8(frame), k == 0, key, w, w*9/16, size)
			}
			if !yield(k == npk-1, payload) {
				return
			}
		}
	}
}

// VP8Frame is the payloads (two 400-byte packets) of synthetic VP8 frame
// number frame, 320x180, a key frame when key.
func VP8Frame(frame int, key bool) [][]byte {
	out := make([][]byte, 0, 2)
	for k := range 2 {
		out = append(out, VP8Payload(make([]byte, 0, 400), uint16(frame)&0x7fff, uint8(frame), k == 0, key, 320, 180, 400))
	}
	return out
}

// VP8Payload builds a VP8 RTP payload of size bytes in buf (RFC 7741
// section 4.2): a descriptor with a 15-bit picture ID and TL0PICIDX; on the
// first packet of a frame (start) the payload header, whose P bit says key
// frame or not, and on key frames the key frame header with the size
// (RFC 6386 section 9.1); then filler.
func VP8Payload(buf []byte, picID uint16, tl0 uint8, start, key bool, w, h uint16, size int) []byte {
	b := buf[:0]
	first := byte(0x80) // X
	if start {
		first |= 0x10 // S, PID 0
	}
	b = append(b, first, 0xc0, 0x80|byte(picID>>8)&0x7f, byte(picID), tl0)
	if start {
		if key {
			b = append(b, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, byte(w), byte(w>>8), byte(h), byte(h>>8))
		} else {
			b = append(b, 0x11, 0x02, 0x00)
		}
	}
	for len(b) < size {
		b = append(b, byte(len(b)))
	}
	return b
}

// H264Payload builds an H.264 RTP payload (RFC 6184): a key frame starts
// with a STAP-A of SPS and PPS (section 5.7.1) in front of an IDR slice;
// other packets are non-IDR slices.
func H264Payload(buf []byte, start, key bool, size int) []byte {
	b := buf[:0]
	if start && key {
		b = append(b, 0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce, 0, 0)
		b = append(b, 0x65)
		n := size - len(b) + 1
		b[9], b[10] = byte(n>>8), byte(n)
	} else {
		b = append(b, 0x41)
	}
	for len(b) < size {
		b = append(b, 0x5a)
	}
	return b
}

// VP9Payload builds a VP9 payload descriptor (RFC 9628 section 4.2) with
// the B, E and P bits, then filler.
func VP9Payload(buf []byte, start, end, key bool, size int) []byte {
	d := byte(0)
	if start {
		d |= 0x08
	}
	if end {
		d |= 0x04
	}
	if !key {
		d |= 0x40
	}
	b := append(buf[:0], d)
	for len(b) < size {
		b = append(b, 0x5a)
	}
	return b
}

// AV1Payload builds an AV1 aggregation header (N set on the first packet
// of a key frame), then filler.
func AV1Payload(buf []byte, start, key bool, size int) []byte {
	h := byte(0x10) // W=1: one OBU element
	if start && key {
		h |= 0x08
	}
	if !start {
		h |= 0x80 // Z: continues an OBU
	}
	b := append(buf[:0], h)
	for len(b) < size {
		b = append(b, 0x5a)
	}
	return b
}
