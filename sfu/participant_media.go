package sfu

import (
	"slices"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-chat/switchboard/media"
)

// sendItem is one unit of work for a subscriber's send goroutine: an
// output packet to resend (NACK), or a cached source packet to forward.
// New packets are forwarded on the publisher's receive goroutine
// (upTrack.receive), without a hand-off.
type sendItem struct {
	dt    *downTrack
	seq   uint16
	layer int8
	rtx   bool
}

// enqueue hands work to p's send goroutine without ever blocking the
// caller (a goroutine reading the subscriber's RTCP): when p's queue is
// full the packet is dropped, and the subscriber's NACKs or the next key
// frame repair the gap.
func (p *Participant) enqueue(it sendItem) {
	select {
	case p.queue <- it:
	default:
		p.sfu.m.dropped.Inc()
	}
}

// enqueueResend queues a NACK resend only while p's queue is less than
// half full: the other half is kept for new packets, so that a receiver
// losing packets (and NACKing them) cannot fill the queue with resends
// and make the SFU drop the packets that follow, which it would NACK in
// turn.
func (p *Participant) enqueueResend(it sendItem) {
	if len(p.queue) >= cap(p.queue)/2 {
		p.sfu.m.dropped.Inc()
		return
	}
	p.enqueue(it)
}

// sendLoop is the one goroutine that writes media to p.
func (p *Participant) sendLoop() {
	for {
		select {
		case <-p.done:
			return
		case it := <-p.queue:
			if it.rtx {
				it.dt.retransmit(it.seq)
			} else {
				it.dt.forward(int(it.layer), it.seq)
			}
		}
	}
}

// onTrack is pion's callback for a new incoming stream: a new track, or one
// more simulcast layer of a track already seen.
func (p *Participant) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	if p.closed() {
		return
	}
	rid := remote.RID()
	remoteSDP := ""
	if rd := p.pc.RemoteDescription(); rd != nil {
		remoteSDP = rd.SDP
	}
	idx := layerIndex(rid, remoteSDP)
	if idx < 0 {
		p.log.Info("ignoring simulcast layer with unknown RID", "rid", rid)
		return
	}
	codec := remote.Codec()
	isNew := false
	p.mu.Lock()
	up := p.published[remote.ID()]
	if up == nil {
		if len(p.published) >= p.sfu.cfg.MaxTracksPerParticipant {
			p.mu.Unlock()
			p.log.Info("track refused", "track", remote.ID(), "err", ErrTooManyTracks,
				"limit", p.sfu.cfg.MaxTracksPerParticipant)
			return
		}
		up = &upTrack{id: remote.ID(), streamID: remote.StreamID(), kind: remote.Kind(), codec: codec,
			mcodec: media.CodecFromMimeType(codec.MimeType), pub: p, writeRTCP: p.pc.WriteRTCP}
		if up.kind == webrtc.RTPCodecTypeAudio {
			up.level = p.conf.speakers.Add(p.id)
		}
		p.published[up.id] = up
		isNew = true
	}
	p.mu.Unlock()

	cacheSize := p.sfu.cfg.VideoCacheSize
	if up.kind == webrtc.RTPCodecTypeAudio {
		cacheSize = p.sfu.cfg.AudioCacheSize
	}
	l := &upLayer{rid: rid, index: idx, remote: remote, ssrc: uint32(remote.SSRC()),
		cache:  media.NewPacketCache(cacheSize),
		pli:    media.NewThrottle(int64(p.sfu.cfg.KeyframeInterval)),
		fwdPLI: media.NewThrottle(int64(p.sfu.cfg.KeyframeInterval)),
		upNack: media.NewThrottle(int64(20 * time.Millisecond))}
	up.mu.Lock()
	if up.layers[idx] != nil {
		up.mu.Unlock()
		p.log.Info("duplicate simulcast layer ignored", "track", up.id, "rid", rid)
		return
	}
	up.layers[idx] = l
	up.live++
	up.mu.Unlock()

	var ext extIDs
	for _, e := range recv.GetParameters().HeaderExtensions {
		switch e.URI {
		case media.AudioLevelURI:
			ext.level = uint8(e.ID)
		case media.VideoOrientationURI:
			ext.orientation = uint8(e.ID)
		}
	}
	p.goTracked(func() { drainRTCP(recv, rid) })
	if !p.goTracked(func() {
		up.readLoop(l, ext)
		p.layerEnded(up, l)
	}) {
		return
	}
	if isNew {
		if err := p.conf.publish(up); err != nil {
			p.log.Info("track not published", "track", up.id, "err", err)
		}
	} else {
		// A new layer: tell subscribers (layer list) and let the
		// allocator consider it.
		p.conf.layersChanged(up)
	}
	up.requestKeyframe(idx)
}

// layerEnded runs when a layer's stream ends; the last layer's end
// unpublishes the track.
func (p *Participant) layerEnded(up *upTrack, l *upLayer) {
	up.mu.Lock()
	if up.layers[l.index] == l {
		up.layers[l.index] = nil
		up.live--
	}
	last := up.live == 0
	up.mu.Unlock()
	if !last {
		return
	}
	p.mu.Lock()
	if p.published[up.id] == up {
		delete(p.published, up.id)
	}
	p.mu.Unlock()
	p.conf.unpublish(up)
}

// wants reports whether p should receive track id.
func (p *Participant) wants(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.wanted[id]; ok {
		return true
	}
	return p.sfu.cfg.AutoSubscribe && !p.unwanted[id]
}

// addDown creates the down track for up and adds it to p's
// PeerConnection; nil, nil if p already receives it, or has not applied
// its first offer yet (Conference.joined subscribes it then).
func (p *Participant) addDown(up *upTrack) (*downTrack, error) {
	if p.closed() {
		return nil, ErrClosed
	}
	if !p.started.Load() {
		// A transceiver added before the client's offer is applied could
		// be matched to one of the client's own m-lines.
		return nil, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.downs[up.id] != nil {
		return nil, nil
	}
	d := newDownTrack(up, p)
	if s, ok := p.wanted[up.id]; ok {
		d.maxWidth.Store(int32(max(s.MaxWidth, 0)))
		d.maxHeight.Store(int32(max(s.MaxHeight, 0)))
	}
	sender, err := p.addSenderLocked(d)
	if err != nil {
		return nil, err
	}
	d.sender = sender
	p.downs[up.id] = d
	p.goTrackedLocked(d.readRTCP)
	p.notify(&p.negotiateDue)
	return d, nil
}

// addSenderLocked adds d to p's PeerConnection. pion's AddTrack reuses a
// free transceiver of the same kind, including one the client offered
// to send and receive on; for the client's simulcast m-line (RFC 8853)
// that would put d's stream next to the client's own layers, where the
// client cannot tell it from them and drops it. While such a transceiver
// is free, d gets a new sendonly transceiver instead.
func (p *Participant) addSenderLocked(d *downTrack) (*webrtc.RTPSender, error) {
	if p.h.OnOfferNeeded != nil {
		// Client-offered negotiation: a new transceiver, bound to the
		// next receive-only m-line the client offers (clientoffers.go);
		// a free one may be the client's own send-only m-line.
		return p.addSendonly(d)
	}
	for _, t := range p.pc.GetTransceivers() {
		if t.Kind() == d.Kind() && t.Sender() == nil && receivesSimulcast(t) {
			tr, err := p.pc.AddTransceiverFromTrack(d,
				webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
			if err != nil {
				return nil, err
			}
			return tr.Sender(), nil
		}
	}
	return p.pc.AddTrack(d)
}

// receivesSimulcast reports whether the client publishes simulcast layers
// (RIDs) on t.
func receivesSimulcast(t *webrtc.RTPTransceiver) bool {
	r := t.Receiver()
	if r == nil {
		return false
	}
	for _, tr := range r.Tracks() {
		if tr.RID() != "" {
			return true
		}
	}
	return false
}

// removeDown stops sending d to p.
func (p *Participant) removeDown(d *downTrack) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.downs[d.up.id] != d {
		return
	}
	delete(p.downs, d.up.id)
	if !p.closed() {
		if err := p.pc.RemoveTrack(d.sender); err != nil {
			p.log.Debug("remove track", "err", err)
		}
		p.notify(&p.negotiateDue)
	}
}

func (p *Participant) downFor(trackID string) *downTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.downs[trackID]
}

// takeDowns empties p's down tracks (p is leaving).
func (p *Participant) takeDowns() []*downTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*downTrack, 0, len(p.downs))
	for id, d := range p.downs {
		out = append(out, d)
		delete(p.downs, id)
	}
	return out
}

func (p *Participant) downList() []*downTrack {
	return p.appendDowns(nil)
}

// appendDowns appends p's down tracks, ordered by track ID, to out.
func (p *Participant) appendDowns(out []*downTrack) []*downTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.downs {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *downTrack) int {
		switch {
		case a.up.id < b.up.id:
			return -1
		case a.up.id > b.up.id:
			return 1
		}
		return 0
	})
	return out
}
