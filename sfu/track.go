package sfu

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-chat/switchboard/media"
)

// maxLayers is the number of simulcast layers a track may have (RFC 8853
// allows more; browsers send up to three).
const maxLayers = 3

// TrackInfo describes a published track to signalling, so that it can tell
// clients who publishes what (MSC3077 sdp_stream_metadata). Subscribers see
// the track with the publisher's own stream ID and track ID in their SDP
// (a=msid), so TrackID and StreamID are what clients already know.
type TrackInfo struct {
	ParticipantID string
	TrackID       string
	StreamID      string
	// Kind is "audio" or "video".
	Kind string
	// MimeType is the codec, for example "video/VP8".
	MimeType string
	// Layers are the simulcast RIDs received so far, lowest quality first;
	// empty for a track without simulcast.
	Layers []string
}

// extIDs are the header extension IDs a publisher negotiated that the
// receive path reads.
type extIDs struct {
	level, orientation uint8
}

// upLayer is one received RTP stream: a simulcast layer of a track, or the
// only stream of a track without simulcast.
type upLayer struct {
	rid    string
	index  int
	remote *webrtc.TrackRemote
	ssrc   uint32
	cache  *media.PacketCache
	rate   media.RateMeter
	pli    *media.Throttle
	fwdPLI *media.Throttle // subscribers' own requests, strictly once per interval
	upNack *media.Throttle
	// pliPending is a key frame request the throttle held back; the read
	// loop sends it once the throttle allows, unless a key frame comes
	// first.
	pliPending atomic.Bool
	// lastPLI is when the last key frame request went to the publisher,
	// unix ns; 0 if none did.
	lastPLI atomic.Int64
	// lastPacket is when the layer last received a packet, unix ns.
	lastPacket atomic.Int64
	// width and height are the frame size from the last key frame that
	// announced one (VP8 key frame header, H.264 SPS); zero if unknown.
	width, height atomic.Int32
}

// upTrack is a track published by a participant, with up to three layers.
type upTrack struct {
	id, streamID string
	kind         webrtc.RTPCodecType
	codec        webrtc.RTPCodecParameters
	mcodec       media.Codec
	pub          *Participant
	level        *media.LevelMeter // audio only
	// writeRTCP sends feedback to the publisher (its PeerConnection's
	// WriteRTCP).
	writeRTCP func([]rtcp.Packet) error

	mu     sync.Mutex
	layers [maxLayers]*upLayer
	live   int // layers whose reader runs

	// downs are the subscribers' down tracks, copied on write so that the
	// receive path reads it without a lock.
	downs atomic.Pointer[[]*downTrack]
}

func (u *upTrack) layer(i int) *upLayer {
	if i < 0 || i >= maxLayers {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.layers[i]
}

func (u *upTrack) info() TrackInfo {
	ti := TrackInfo{ParticipantID: u.pub.id, TrackID: u.id, StreamID: u.streamID,
		Kind: u.kind.String(), MimeType: u.codec.MimeType}
	u.mu.Lock()
	for _, l := range u.layers {
		if l != nil && l.rid != "" {
			ti.Layers = append(ti.Layers, l.rid)
		}
	}
	u.mu.Unlock()
	return ti
}

func (u *upTrack) addDown(d *downTrack) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var next []*downTrack
	if cur := u.downs.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, d)
	u.downs.Store(&next)
}

func (u *upTrack) removeDown(d *downTrack) {
	u.mu.Lock()
	defer u.mu.Unlock()
	cur := u.downs.Load()
	if cur == nil {
		return
	}
	next := make([]*downTrack, 0, len(*cur))
	for _, x := range *cur {
		if x != d {
			next = append(next, x)
		}
	}
	u.downs.Store(&next)
}

// requestKeyframe sends a PLI (RFC 4585 section 6.3.1) for layer i to the
// publisher, at most once per Config.KeyframeInterval per layer. A request
// the throttle holds back is not lost: it waits in pliPending, and the key
// frame of a request already on its way answers it too. Once a key frame
// has answered the last request, the next may go keyframeGuard after that
// request, so that a subscriber joining just after another one does not
// wait out the whole interval for its first frame.
func (u *upTrack) requestKeyframe(i int) {
	if u.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	l := u.layer(i)
	if l == nil {
		return
	}
	now := u.pub.sfu.now()
	if !l.pli.Allow(now) {
		l.pliPending.Store(true)
		return
	}
	l.pliPending.Store(false)
	u.sendPLI(l, now)
}

// forwardKeyframeRequest passes on a subscriber's PLI or FIR for layer i:
// subscribers' requests stay within one per Config.KeyframeInterval per
// layer, however many key frames arrive meanwhile.
func (u *upTrack) forwardKeyframeRequest(i int) {
	l := u.layer(i)
	if l == nil || u.kind != webrtc.RTPCodecTypeVideo || !l.fwdPLI.Allow(u.pub.sfu.now()) {
		return
	}
	u.requestKeyframe(i)
}

// keyframeGuard is the least time between two key frame requests to one
// layer when the first was answered. Browsers' encoders ignore a request
// that comes within 300 ms of the last one they acted on (libwebrtc's
// EncoderRtcpFeedback, kMinKeyframeSendIntervalMs): a request sent sooner
// would bring no key frame, and the subscriber waiting for it would wait
// out Config.KeyframeInterval for the next. The 50 ms on top cover
// jitter between two requests on their way to the publisher.
const keyframeGuard = int64(350 * time.Millisecond)

func (u *upTrack) sendPLI(l *upLayer, now int64) {
	l.lastPLI.Store(now)
	u.pub.sfu.m.plis.Inc()
	_ = u.writeRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: l.ssrc}})
}

// keyframeState updates the layer's key frame requests for a received
// packet: a key frame answers any request; otherwise a held-back request
// goes out once the throttle allows it.
func (u *upTrack) keyframeState(l *upLayer, keyframe bool, now int64) {
	if u.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	if keyframe {
		l.pliPending.Store(false)
		if last := l.lastPLI.Load(); last != 0 {
			l.pli.Satisfied(last, keyframeGuard)
		}
		return
	}
	if l.pliPending.Load() && l.pli.Allow(now) {
		l.pliPending.Store(false)
		u.sendPLI(l, now)
	}
}

// nackUpstream asks the publisher again for a packet the cache lacks
// (RFC 4585 section 6.2.1), at most every 20 ms per layer: rxFeedback
// already asks for packets that never arrived, this covers
// packets evicted from the cache, and must not turn a subscriber's NACK
// storm into one towards the publisher.
func (u *upTrack) nackUpstream(i int, seq uint16) {
	l := u.layer(i)
	if l == nil || !l.upNack.Allow(u.pub.sfu.now()) {
		return
	}
	_ = u.writeRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{
		MediaSSRC: l.ssrc, Nacks: []rtcp.NackPair{{PacketID: seq}},
	}})
}

// layerIndex orders simulcast RIDs by quality, lowest first. Browsers use
// q/h/f (quarter, half, full), some clients l/m/h or 0/1/2; "h" is the middle
// layer when the publisher also sends "f" or "q", else the top one.
func layerIndex(rid, remoteSDP string) int {
	switch strings.ToLower(rid) {
	case "", "q", "l", "lo", "low", "0":
		return 0
	case "m", "mid", "1":
		return 1
	case "h":
		if strings.Contains(remoteSDP, "a=rid:f ") || strings.Contains(remoteSDP, "a=rid:q ") {
			return 1
		}
		return 2
	case "f", "hi", "high", "2":
		return 2
	}
	return -1
}

// readLoop receives one layer until the track ends.
func (u *upTrack) readLoop(l *upLayer, ext extIDs) {
	buf := make([]byte, 1500)
	var hdr rtp.Header
	hdr.Extensions = make([]rtp.Extension, 0, 16)
	hdr.CSRC = make([]uint32, 0, 16)
	var meta media.PacketMeta
	for {
		n, _, err := l.remote.Read(buf)
		if err != nil {
			return
		}
		u.receive(l, buf[:n], &hdr, &meta, ext)
	}
}

// receive handles one packet of layer l: parse it once, cache it (for
// NACKs and layer switches), and forward it to every subscriber that wants
// this layer, on this goroutine. Forwarding here rather than handing the
// packet to a goroutine per subscriber saves a goroutine wake-up per
// packet and subscriber, which cost more than the write itself. A write
// waits only while the kernel's UDP socket buffer is full (ICE-TCP goes
// through a buffer that drops when full), so one subscriber cannot hold
// up the others.
// hdr and meta are the caller's scratch space.
func (u *upTrack) receive(l *upLayer, pkt []byte, hdr *rtp.Header, meta *media.PacketMeta, ext extIDs) {
	payload, ok := parsePacket(pkt, hdr, meta, u.mcodec, ext)
	if !ok {
		return
	}
	now := u.pub.sfu.now()
	l.lastPacket.Store(now)
	if len(payload) > 0 {
		u.keyframeState(l, meta.Keyframe, now)
		l.rate.Add(len(pkt), now)
	}
	if meta.Width > 0 {
		l.width.Store(int32(meta.Width))
		l.height.Store(int32(meta.Height))
	}
	if meta.HasAudioLevel && u.level != nil {
		u.level.Observe(meta.AudioLevel)
	}
	if !l.cache.Put(payload, meta) {
		return
	}
	if downs := u.downs.Load(); downs != nil && len(*downs) > 0 {
		if b := u.pub.sfu.batch; b != nil {
			b.begin()
			defer b.end()
		}
		bit := uint32(1) << l.index
		for _, d := range *downs {
			if d.want.Load()&bit != 0 {
				d.forwardPacket(l.index, payload, meta)
			}
		}
	}
}

// parsePacket parses an RTP packet (RFC 3550 section 5.1) into hdr and the
// forwarding metadata into meta, and returns its payload without padding
// (empty for a padding-only packet). It reports false for packets to drop:
// malformed ones and unparsable payload descriptors.
func parsePacket(pkt []byte, hdr *rtp.Header, meta *media.PacketMeta, codec media.Codec,
	ext extIDs) ([]byte, bool) {
	hn, err := hdr.Unmarshal(pkt)
	if err != nil {
		return nil, false
	}
	end := len(pkt)
	if hdr.Padding {
		pad := int(pkt[end-1])
		if pad == 0 || hn+pad > end {
			return nil, false
		}
		end -= pad
	}
	payload := pkt[hn:end]
	*meta = media.PacketMeta{SequenceNumber: hdr.SequenceNumber, Timestamp: hdr.Timestamp, Marker: hdr.Marker}
	if len(payload) == 0 {
		// Padding only (bandwidth probing, RFC 3550 section 5.1): forwarded
		// empty so that the subscriber sees no sequence gap, which for
		// H.264 would look like a lost packet.
		return payload, true
	}
	switch {
	case codec == media.CodecVP8:
		if media.ParseVP8(payload, &meta.VP8) != nil {
			return nil, false
		}
		meta.Keyframe = meta.VP8.Keyframe
		meta.Width, meta.Height = meta.VP8.Width, meta.VP8.Height
	case codec.IsVideo():
		meta.Keyframe = media.IsKeyframe(codec, payload)
		if meta.Keyframe && codec == media.CodecH264 {
			if w, h, ok := media.H264PayloadSize(payload); ok {
				meta.Width, meta.Height = w, h
			}
		}
	default:
		// Every audio packet is a place a receiver can start from.
		meta.Keyframe = true
		if ext.level != 0 {
			if e := hdr.GetExtension(ext.level); e != nil {
				if lvl, voice, err := media.ParseAudioLevel(e); err == nil {
					meta.HasAudioLevel, meta.AudioLevel, meta.Voice = true, lvl, voice
				}
			}
		}
	}
	if codec.IsVideo() && ext.orientation != 0 {
		if e := hdr.GetExtension(ext.orientation); len(e) > 0 {
			meta.HasOrientation, meta.Orientation = true, e[0]
		}
	}
	return payload, true
}

// drainRTCP reads the RTCP a publisher sends for one layer (sender
// reports), which rxFeedback needs read to build receiver reports.
func drainRTCP(recv *webrtc.RTPReceiver, rid string) {
	buf := make([]byte, 1500)
	for {
		var err error
		if rid == "" {
			_, _, err = recv.Read(buf)
		} else {
			_, _, err = recv.ReadSimulcast(buf, rid)
		}
		if err != nil {
			return
		}
	}
}
