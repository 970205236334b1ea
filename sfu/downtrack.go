package sfu

import (
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-chat/switchboard/media"
)

// histSize is how many sent packets a down track remembers to answer NACKs.
const histSize = 1024

// rtxHoldoff is the least time between two resends of one packet: a NACK
// repeated sooner asks for a resend that is still on its way (receivers
// repeat NACKs, and a starved one sends them in bursts).
const rtxHoldoff = int64(50e6)

// histEntry maps an output sequence number back to the cached source packet
// and the rewritten fields it was sent with.
type histEntry struct {
	valid  bool
	layer  int8
	outSeq uint16
	srcSeq uint16
	ts     uint32
	pic    uint16
	tl0    uint8
	rtxAt  int64 // last resend, unix ns; 0 if never
}

// downTrack is one published track as sent to one subscriber. It is a
// webrtc.TrackLocal written by the publisher's receive goroutines and the
// subscriber's send goroutine (under fwdMu): it picks the
// simulcast layer, rewrites sequence numbers, timestamps and VP8 picture
// IDs so that the subscriber sees one continuous stream, and resends from
// the publisher's cache on NACK.
type downTrack struct {
	up     *upTrack
	sub    *Participant
	sender *webrtc.RTPSender

	// bound is set by start once pion has bound d and can send what it
	// writes (the subscriber's answer that carries d is applied), and
	// cleared in Unbind; until then nothing is forwarded.
	bound atomic.Bool
	// mu guards the state pion hands over in Bind.
	mu      sync.Mutex
	ssrc    uint32
	pt      uint8
	writer  webrtc.TrackLocalWriter
	levelID uint8
	tccID   uint8
	cvoID   uint8

	// target is the layer the allocator chose (-1: paused); current the one
	// being forwarded (-1: none), written under fwdMu only.
	target  atomic.Int32
	current atomic.Int32
	// want has a bit per layer the receive path should queue for us.
	want   atomic.Uint32
	maskMu sync.Mutex
	// maxWidth and maxHeight are the subscriber's size limit (0: none).
	maxWidth, maxHeight atomic.Int32

	// fwdMu guards the forwarding state below: a publisher's receive
	// goroutine forwards (one per simulcast layer), the subscriber's send
	// goroutine resends.
	fwdMu sync.Mutex
	rw    *media.Rewriter
	hdr   rtp.Header
	buf   [media.MaxPayloadSize]byte
	meta  media.PacketMeta
	tcc   [2]byte
	level [1]byte
	cvo   [1]byte
	hist  [histSize]histEntry
}

func newDownTrack(up *upTrack, sub *Participant) *downTrack {
	d := &downTrack{up: up, sub: sub, rw: media.NewRewriter(up.codec.ClockRate)}
	d.hdr.Extensions = make([]rtp.Extension, 0, 4)
	d.hdr.CSRC = make([]uint32, 0, 1)
	d.current.Store(-1)
	d.target.Store(0)
	d.refreshWant()
	return d
}

// ID, RID, StreamID and Kind implement webrtc.TrackLocal: the subscriber
// sees the publisher's own track and stream IDs.
func (d *downTrack) ID() string                { return d.up.id }
func (d *downTrack) RID() string               { return "" }
func (d *downTrack) StreamID() string          { return d.up.streamID }
func (d *downTrack) Kind() webrtc.RTPCodecType { return d.up.kind }
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.bound.Store(false)
	d.mu.Lock()
	d.writer = nil
	d.mu.Unlock()
	return nil
}

// Bind implements webrtc.TrackLocal: it takes the payload type the
// subscriber negotiated for the publisher's codec, and the header extension
// IDs the forwarding path writes. pion binds a sender while it applies the
// description that negotiates it, but drops what is written to it until
// that is done: forwarding starts with start, afterwards.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	var chosen *webrtc.RTPCodecParameters
	for _, c := range ctx.CodecParameters() {
		if !strings.EqualFold(c.MimeType, d.up.codec.MimeType) {
			continue
		}
		if chosen == nil || c.SDPFmtpLine == d.up.codec.SDPFmtpLine {
			c := c
			chosen = &c
		}
	}
	if chosen == nil {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	d.mu.Lock()
	d.ssrc = uint32(ctx.SSRC())
	d.pt = uint8(chosen.PayloadType)
	d.writer = ctx.WriteStream()
	d.levelID, d.tccID, d.cvoID = 0, 0, 0
	for _, e := range ctx.HeaderExtensions() {
		switch e.URI {
		case media.AudioLevelURI:
			d.levelID = uint8(e.ID)
		case media.TransportCCURI:
			d.tccID = uint8(e.ID)
		case media.VideoOrientationURI:
			d.cvoID = uint8(e.ID)
		}
	}
	d.mu.Unlock()
	return *chosen, nil
}

// start begins forwarding to a down track pion has bound, once the
// description that negotiated it is applied (pion's sender sends from
// then on). This is when a new subscriber's video asks the publisher for
// its first key frame: one that arrived before could not have reached the
// subscriber, and the allocator's next tick may be up to
// Config.AllocationInterval away.
func (d *downTrack) start() {
	d.mu.Lock()
	ready := d.writer != nil
	d.mu.Unlock()
	if !ready || d.bound.Swap(true) {
		return
	}
	if t := int(d.target.Load()); t >= 0 && int(d.current.Load()) != t {
		d.up.requestKeyframe(t)
	}
}

// setTarget records the allocator's layer choice (-1 pauses) and asks the
// publisher for a key frame of the new layer, once d is bound (Bind asks
// for the first one: a request sent before would be spent on a key frame
// the subscriber cannot receive yet).
func (d *downTrack) setTarget(layer int) {
	if int(d.target.Swap(int32(layer))) != layer {
		d.refreshWant()
	}
	if layer >= 0 && int(d.current.Load()) != layer && d.bound.Load() {
		d.up.requestKeyframe(layer)
	}
}

// refreshWant recomputes which layers the receive path queues for us: the
// one being forwarded and the one to switch to.
func (d *downTrack) refreshWant() {
	d.maskMu.Lock()
	var m uint32
	if c := d.current.Load(); c >= 0 {
		m |= 1 << c
	}
	if t := d.target.Load(); t >= 0 {
		m |= 1 << t
	}
	d.want.Store(m)
	d.maskMu.Unlock()
}

// forward sends cached source packet seq of layer to the subscriber (see
// sendLocked).
func (d *downTrack) forward(layer int, seq uint16) {
	if !d.bound.Load() {
		return
	}
	l := d.up.layer(layer)
	if l == nil {
		return
	}
	d.fwdMu.Lock()
	defer d.fwdMu.Unlock()
	n, ok := l.cache.Get(seq, d.buf[:], &d.meta)
	if !ok {
		return
	}
	d.sendLocked(layer, n)
}

// forwardPacket sends a source packet of layer, just received, to the
// subscriber (see sendLocked).
func (d *downTrack) forwardPacket(layer int, payload []byte, meta *media.PacketMeta) {
	if !d.bound.Load() || len(payload) > len(d.buf) {
		return
	}
	d.fwdMu.Lock()
	defer d.fwdMu.Unlock()
	n := copy(d.buf[:], payload)
	d.meta = *meta
	d.sendLocked(layer, n)
}

// sendLocked sends the source packet of layer in d.buf[:n] and d.meta,
// switching layers only at a key frame of the target layer, and only once
// d is bound: a key frame taken as the start of the stream while the
// packet could not be sent would leave the subscriber with frames it
// cannot decode.
func (d *downTrack) sendLocked(layer, n int) {
	target, current := int(d.target.Load()), int(d.current.Load())
	switch {
	case target < 0:
		if current >= 0 {
			d.current.Store(-1)
			d.refreshWant()
			d.sub.sfu.m.layerSwitches.Inc()
		}
		return
	case layer == target && current != target:
		if !d.meta.Keyframe {
			return
		}
		d.current.Store(int32(target))
		d.refreshWant()
		d.rw.Switch()
		if current >= 0 || d.up.kind == webrtc.RTPCodecTypeVideo {
			d.sub.sfu.m.layerSwitches.Inc()
		}
	case layer != current:
		return
	}
	now := d.sub.sfu.now()
	outSeq, outTS, ok := d.rw.Rewrite(d.meta.SequenceNumber, d.meta.Timestamp, now)
	if !ok {
		return
	}
	payload := d.buf[:n]
	var pic uint16
	var tl0 uint8
	if d.up.mcodec == media.CodecVP8 && (d.meta.VP8.HasPictureID || d.meta.VP8.HasTL0PICIDX) {
		pic, tl0 = d.rw.RewriteVP8(&d.meta.VP8)
		media.RewriteVP8(payload, &d.meta.VP8, pic, tl0)
	}
	d.hist[outSeq%histSize] = histEntry{valid: true, layer: int8(layer), outSeq: outSeq,
		srcSeq: d.meta.SequenceNumber, ts: outTS, pic: pic, tl0: tl0}
	if !d.write(outSeq, outTS, payload, now) && current != int(d.current.Load()) {
		// The packet that started the layer did not go out (the
		// subscriber's DTLS handshake was not done): start again at
		// the next key frame, and ask for one.
		d.current.Store(int32(current))
		d.refreshWant()
		d.up.requestKeyframe(target)
	}
}

// retransmit resends output packet outSeq after a NACK (RFC 4585 section
// 6.2.1) with the same rewritten fields, or forwards the NACK to the
// publisher when the cache no longer has it.
func (d *downTrack) retransmit(outSeq uint16) {
	d.fwdMu.Lock()
	defer d.fwdMu.Unlock()
	h := &d.hist[outSeq%histSize]
	if !h.valid || h.outSeq != outSeq {
		return
	}
	now := d.sub.sfu.now()
	if h.rtxAt != 0 && now-h.rtxAt < rtxHoldoff {
		return
	}
	l := d.up.layer(int(h.layer))
	if l == nil {
		return
	}
	n, ok := l.cache.Get(h.srcSeq, d.buf[:], &d.meta)
	if !ok {
		d.up.nackUpstream(int(h.layer), h.srcSeq)
		return
	}
	payload := d.buf[:n]
	if d.up.mcodec == media.CodecVP8 {
		media.RewriteVP8(payload, &d.meta.VP8, h.pic, h.tl0)
	}
	h.rtxAt = now
	d.sub.sfu.m.retransmits.Inc()
	d.write(outSeq, h.ts, payload, now)
}

// write sends one packet with our SSRC and payload type and the header
// extensions the subscriber negotiated: the audio level (RFC 6464) for
// audio, the video orientation for video, and a transport-wide sequence
// number for bandwidth estimation. The publisher's other extensions (its
// IDs mean nothing to the subscriber) are dropped. It reports whether the
// packet went out: pion drops, without an error, what is written before
// the subscriber's SRTP session is up (the DTLS handshake of a
// PeerConnection still connecting, as when a client offers again at once
// with receive-only m-lines, before its first answer has connected).
func (d *downTrack) write(seq uint16, ts uint32, payload []byte, now int64) bool {
	if !d.bound.Load() {
		return false
	}
	d.mu.Lock()
	w, ssrc, pt, levelID, tccID, cvoID := d.writer, d.ssrc, d.pt, d.levelID, d.tccID, d.cvoID
	d.mu.Unlock()
	if w == nil {
		return false
	}
	h := &d.hdr
	h.Version = 2
	h.Padding = false
	h.Marker = d.meta.Marker
	h.PayloadType = pt
	h.SequenceNumber = seq
	h.Timestamp = ts
	h.SSRC = ssrc
	h.CSRC = h.CSRC[:0]
	h.Extension = false
	h.ExtensionProfile = 0
	h.Extensions = h.Extensions[:0]
	if levelID != 0 && d.meta.HasAudioLevel {
		d.level[0] = d.meta.AudioLevel & 0x7f
		if d.meta.Voice {
			d.level[0] |= 0x80
		}
		_ = h.SetExtension(levelID, d.level[:])
	}
	if cvoID != 0 && d.meta.HasOrientation {
		d.cvo[0] = d.meta.Orientation
		_ = h.SetExtension(cvoID, d.cvo[:])
	}
	if tccID != 0 {
		binary.BigEndian.PutUint16(d.tcc[:], d.sub.bwe.Sent(len(payload)+12, now))
		_ = h.SetExtension(tccID, d.tcc[:])
	}
	if n, err := w.WriteRTP(h, payload); err != nil || n == 0 {
		return false
	}
	m := d.sub.sfu.m
	m.packets.Inc()
	m.bytes.Add(float64(len(payload)))
	return true
}

// readRTCP reads the subscriber's feedback for this track and hands it to
// handleRTCP. It returns when the sender stops.
func (d *downTrack) readRTCP() {
	buf := make([]byte, 1500)
	for {
		n, _, err := d.sender.Read(buf)
		if err != nil {
			return
		}
		d.handleRTCP(buf[:n])
	}
}

// handleRTCP acts on one compound RTCP packet from the subscriber: NACKs
// are answered from the cache, PLI and FIR become (throttled) key frame
// requests to the publisher, transport-wide feedback feeds the
// subscriber's bandwidth estimate. pion hands a compound packet to every
// sender whose SSRC it names, so NACKs and key frame requests for other
// SSRCs are left to their own down tracks, and the estimator folds a
// feedback packet that reaches several down tracks once. It parses
// without allocating (a TWCC feedback packet acknowledges every packet
// sent).
func (d *downTrack) handleRTCP(pkt []byte) {
	d.mu.Lock()
	ssrc := d.ssrc
	d.mu.Unlock()
	for rest := pkt; len(rest) > 0; {
		typ, mediaSSRC, fci, next, err := media.NextFeedback(rest)
		if err != nil {
			return
		}
		rest = next
		if typ != media.FeedbackTWCC && mediaSSRC != ssrc {
			continue
		}
		switch typ {
		case media.FeedbackNACK:
			media.ForEachNACK(fci, func(seq uint16) {
				d.sub.sfu.m.nacks.Inc()
				d.sub.enqueueResend(sendItem{dt: d, seq: seq, rtx: true})
			})
		case media.FeedbackPLI, media.FeedbackFIR:
			layer := int(d.current.Load())
			if layer < 0 {
				layer = int(d.target.Load())
			}
			d.up.forwardKeyframeRequest(layer)
		case media.FeedbackTWCC:
			_ = d.sub.bwe.OnFeedbackFCI(fci, d.sub.sfu.now())
		}
	}
}
