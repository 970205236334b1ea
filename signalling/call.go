package signalling

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-chat/switchboard/sfu"
	"github.com/switchboard-chat/switchboard/signalling/rtcroom"
)

// call is one participant's call with the focus: a device of a user in
// the SFU conference of a room's call.
type call struct {
	f             *Focus
	pid           string // SFU participant ID
	userID        string
	deviceID      string
	roomID        string
	confID        string
	conf          string // SFU conference ID: the room's (rtcroom)
	callID        string
	clientSession string
	ready         chan struct{} // closed once the answer is sent
	done          chan struct{} // closed when the call ends
	doneOnce      sync.Once

	// sendMu orders messages to the client (seq follows send order, the
	// answer precedes candidates) and guards seq.
	sendMu sync.Mutex
	seq    int

	// mu guards the fields below.
	mu           sync.Mutex
	p            *sfu.Participant
	started      bool // the answer is being or was sent
	pendingCands []webrtc.ICECandidateInit
	tracks       []sfu.TrackInfo       // what the client can receive
	meta         map[string]streamMeta // the client's own streams
	speakers     []byte                // last speakers message
	dcOpen       bool
	lastPing     time.Time
	lastSeen     time.Time // last data-channel message from the client
	hangupReason string    // sent when the participant closes
	closing      bool
}

func newCall(f *Focus, userID string, inv *inviteContent) *call {
	return &call{
		f: f, pid: participantID(userID, inv.DeviceID), userID: userID, deviceID: inv.DeviceID,
		roomID: inv.RoomID, confID: inv.ConfID, conf: rtcroom.Conference(inv.RoomID),
		callID: inv.CallID, clientSession: inv.SenderSessionID,
		ready: make(chan struct{}), done: make(chan struct{}), meta: inv.Metadata,
	}
}

func (c *call) handler() sfu.Handler {
	return sfu.Handler{
		OnICECandidate: c.onCandidate,
		OnOffer:        c.onOffer,
		OnTracks:       c.onTracks,
		OnSpeakers:     c.onSpeakers,
		OnDataMessage:  c.onData,
		OnClose:        c.onClose,
	}
}

func (c *call) finish() { c.doneOnce.Do(func() { close(c.done) }) }

func (c *call) isStarted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started && !c.closing
}

// start sends the answer and the SFU's candidates (MSC3401 "Call setup":
// to-device m.call.answer and m.call.candidates) and opens the call to
// server offers and metadata. It reports false if the participant closed
// before.
func (c *call) start(p *sfu.Participant, answer string) bool {
	c.sendMu.Lock()
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		c.sendMu.Unlock()
		return false
	default:
	}
	c.p, c.started = p, true
	now := c.f.cfg.Now()
	c.lastPing, c.lastSeen = now, now
	cands := c.pendingCands
	c.pendingCands = nil
	c.mu.Unlock()
	c.f.m.calls.Inc()
	c.sendToDeviceLocked(TypeAnswer, map[string]any{
		"answer":              sessionDescription{Type: "answer", SDP: answer},
		"sdp_stream_metadata": map[string]any{},
	})
	// The candidates are in the answer already; trickling them too helps
	// clients that add candidates only from m.call.candidates. The empty
	// candidate ends them (spec: m.call.candidates).
	list := make([]candidate, 0, len(cands)+1)
	for _, ci := range cands {
		list = append(list, candidate{Candidate: ci.Candidate, SDPMid: ci.SDPMid, SDPMLineIndex: ci.SDPMLineIndex,
			UsernameFragment: ci.UsernameFragment})
	}
	list = append(list, candidate{Candidate: ""})
	c.sendToDeviceLocked(TypeCandidates, map[string]any{"candidates": list})
	close(c.ready)
	c.sendMu.Unlock()
	return true
}

// waitReady waits until the answer is sent; false if the call ended.
func (c *call) waitReady() bool {
	select {
	case <-c.ready:
		return true
	case <-c.done:
		return false
	}
}

// sendToDeviceLocked sends a to-device call event with the MSC3401
// fields. sendMu must be held.
func (c *call) sendToDeviceLocked(typ string, body map[string]any) {
	c.seq++
	body["version"] = "1"
	body["call_id"] = c.callID
	body["party_id"] = c.f.partyID
	body["conf_id"] = c.confID
	body["room_id"] = c.roomID
	body["device_id"] = c.f.cfg.DeviceID
	body["sender_session_id"] = c.f.sessionID
	body["dest_session_id"] = c.clientSession
	body["seq"] = c.seq
	c.f.sendToDevice(c.userID, c.deviceID, typ, body)
}

func (c *call) sendToDevice(typ string, body map[string]any) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.sendToDeviceLocked(typ, body)
}

// sendData sends an MSC3898 data-channel message.
func (c *call) sendData(typ string, body any) error {
	c.mu.Lock()
	p := c.p
	c.mu.Unlock()
	if p == nil {
		return sfu.ErrNoDataChannel
	}
	b, err := json.Marshal(struct {
		Type    string `json:"type"`
		Content any    `json:"content"`
	}{typ, body})
	if err != nil {
		return err
	}
	return p.SendData(b)
}

// signal sends on the data channel when it is open, else to-device.
func (c *call) signal(typ string, body map[string]any) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if err := c.sendData(typ, body); err == nil {
		return
	}
	c.sendToDeviceLocked(typ, body)
}

func (c *call) onCandidate(ci webrtc.ICECandidateInit) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.mu.Lock()
	if !c.started {
		c.pendingCands = append(c.pendingCands, ci)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.sendToDeviceLocked(TypeCandidates, map[string]any{"candidates": []candidate{{Candidate: ci.Candidate,
		SDPMid: ci.SDPMid, SDPMLineIndex: ci.SDPMLineIndex, UsernameFragment: ci.UsernameFragment}}})
}

// onOffer sends a server renegotiation offer (MSC3898 m.call.negotiate)
// with the metadata of the streams in it.
func (c *call) onOffer(sdp string) {
	if !c.waitReady() {
		return
	}
	c.signal(TypeNegotiate, map[string]any{
		"description":         sessionDescription{Type: "offer", SDP: sdp},
		"sdp_stream_metadata": c.metadata(),
	})
}

func (c *call) onTracks(ti []sfu.TrackInfo) {
	c.mu.Lock()
	c.tracks = ti
	c.mu.Unlock()
	if !c.waitReady() {
		return
	}
	c.pushMetadata()
}

// pushMetadata tells the client whose streams it can receive (MSC3898
// m.call.sdp_stream_metadata_changed), on the data channel only: metadata
// sent to-device before the channel opened could arrive after newer
// metadata sent on the channel and overwrite it (the two paths are not
// ordered). Until the channel opens the client has the metadata of the
// offers it answered, and dcOpened pushes the whole set.
func (c *call) pushMetadata() {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	_ = c.sendData(TypeMetadataChanged, map[string]any{"sdp_stream_metadata": c.metadata()})
}

// outStream is one stream of the sdp_stream_metadata the focus sends:
// MSC3077's fields plus who publishes it.
type outStream struct {
	UserID     string              `json:"user_id"`
	DeviceID   string              `json:"device_id"`
	Purpose    string              `json:"purpose"`
	AudioMuted bool                `json:"audio_muted"`
	VideoMuted bool                `json:"video_muted"`
	Tracks     map[string]outTrack `json:"tracks"`
}

type outTrack struct {
	Kind   string   `json:"kind"`
	Layers []string `json:"layers,omitempty"`
}

// metadata describes the streams the client can receive, keyed by
// stream ID (MSC3077), with their publishers' user and device.
func (c *call) metadata() map[string]outStream {
	c.mu.Lock()
	tracks := c.tracks
	c.mu.Unlock()
	out := make(map[string]outStream)
	for _, ti := range tracks {
		// The focus's own participants, or another protocol's in the
		// same conference (FocusConfig.Peers); purpose and mute state are
		// known of the focus's own only (the MSC3077 metadata they send).
		pub := c.f.lookup(ti.ParticipantID)
		userID, deviceID, known := c.f.peer(ti.ParticipantID)
		if !known {
			continue
		}
		s, ok := out[ti.StreamID]
		if !ok {
			s = outStream{UserID: userID, DeviceID: deviceID, Purpose: "m.usermedia", Tracks: map[string]outTrack{}}
			if m, ok := pub.streamMetaOf(ti.StreamID); ok {
				if m.Purpose != "" {
					s.Purpose = m.Purpose
				}
				s.AudioMuted, s.VideoMuted = m.AudioMuted, m.VideoMuted
			}
		}
		s.Tracks[ti.TrackID] = outTrack{Kind: ti.Kind, Layers: ti.Layers}
		out[ti.StreamID] = s
	}
	return out
}

// streamMetaOf is the client's metadata of its stream streamID; ok false
// on a nil call (a participant of another protocol).
func (c *call) streamMetaOf(streamID string) (streamMeta, bool) {
	if c == nil {
		return streamMeta{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.meta[streamID]
	return m, ok
}

// updateMeta records the client's own stream metadata and tells the
// others in the conference.
func (c *call) updateMeta(m map[string]streamMeta) {
	if m == nil {
		return
	}
	c.mu.Lock()
	c.meta = m
	c.mu.Unlock()
	for _, o := range c.f.conferenceCalls(c) {
		if o.isStarted() {
			o.pushMetadata()
		}
	}
}

type speakerRef struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
}

// onSpeakers tells the client who is speaking, on the data channel only.
func (c *call) onSpeakers(active []string, dominant string) {
	body := struct {
		Active   []speakerRef `json:"active"`
		Dominant *speakerRef  `json:"dominant,omitempty"`
	}{Active: []speakerRef{}}
	for _, pid := range active {
		if u, d, ok := c.f.peer(pid); ok {
			body.Active = append(body.Active, speakerRef{u, d})
		}
	}
	if u, d, ok := c.f.peer(dominant); ok {
		body.Dominant = &speakerRef{u, d}
	}
	b, _ := json.Marshal(body)
	c.mu.Lock()
	c.speakers = b
	c.mu.Unlock()
	if !c.isStarted() {
		return
	}
	_ = c.sendData(TypeSpeakers, json.RawMessage(b))
}

// markDCOpen notes that the data channel works, because the client sent
// on it (fromClient) or a ping to it was sent; true the first time, when
// the client is sent the current metadata and speakers. Only the
// client's messages (and the channel opening) start a new pong window: a
// ping the focus could send proves nothing about the client.
func (c *call) markDCOpen(now time.Time, fromClient bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fromClient || !c.dcOpen {
		c.lastSeen = now
	}
	if c.dcOpen {
		return false
	}
	c.dcOpen = true
	return true
}

func (c *call) dcOpened() {
	c.pushMetadata()
	c.mu.Lock()
	sp := c.speakers
	c.mu.Unlock()
	if sp != nil {
		_ = c.sendData(TypeSpeakers, json.RawMessage(sp))
	}
}

// ping sends m.call.ping when one is due and ends a call whose data
// channel stayed quiet for PongTimeout (MSC3898 m.call.ping).
func (c *call) ping(now time.Time) {
	c.mu.Lock()
	if !c.started || c.closing {
		c.mu.Unlock()
		return
	}
	quiet := c.dcOpen && now.Sub(c.lastSeen) > c.f.cfg.PongTimeout
	due := now.Sub(c.lastPing) >= c.f.cfg.PingInterval
	if due {
		c.lastPing = now
	}
	c.mu.Unlock()
	if quiet {
		c.f.log.Info("no pong, removing participant", "participant", c.pid)
		c.end(ReasonICETimeout)
		return
	}
	if !due {
		return
	}
	if err := c.sendData(TypePing, struct{}{}); err == nil && c.markDCOpen(now, false) {
		c.dcOpened()
	}
}

func (c *call) setHangupReason(r string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hangupReason == "" {
		c.hangupReason = r
	}
	c.closing = true
}

// end removes the participant, telling the client why, from a goroutine
// of its own (the caller may be an SFU callback).
func (c *call) end(reason string) {
	c.setHangupReason(reason)
	c.f.goTracked(c.closeParticipant)
}

// closeParticipant removes the participant from the SFU and waits for it.
func (c *call) closeParticipant() {
	c.mu.Lock()
	p := c.p
	c.closing = true
	c.mu.Unlock()
	if p != nil {
		_ = p.Close()
	}
}

func (c *call) onClose(reason error) {
	c.finish()
	c.f.removeCall(c)
	c.mu.Lock()
	started, hr := c.started, c.hangupReason
	c.closing = true
	c.mu.Unlock()
	if !started {
		return // the invite failed; handleInvite answers
	}
	c.f.m.calls.Dec()
	switch {
	case hr != "":
	case errors.Is(reason, sfu.ErrICEFailed):
		hr = ReasonICEFailed
	case errors.Is(reason, sfu.ErrClosed):
		hr = ReasonUserHangup
	}
	if hr == "" {
		c.f.m.hangups.WithLabelValues("client").Inc()
		return // the client hung up or closed its connection
	}
	c.f.m.hangups.WithLabelValues(hr).Inc()
	c.sendToDevice(TypeHangup, map[string]any{"reason": hr})
}

// clientHangup ends the call at the client's request (m.call.hangup or
// m.call.reject): nothing is sent back.
func (c *call) clientHangup() {
	c.closeParticipant()
}

// handleToDevice handles a to-device call event for this call.
func (c *call) handleToDevice(ctx context.Context, typ string, content json.RawMessage) {
	max := c.f.cfg.MaxContentBytes
	var err error
	switch typ {
	case TypeCandidates:
		var cc *candidatesContent
		if cc, err = parseCandidates(content, max); err == nil {
			c.addCandidates(cc.Candidates)
		}
	case TypeNegotiate:
		var n *negotiateContent
		if n, err = parseNegotiate(content, max); err == nil {
			c.negotiate(ctx, n.Description, n.Metadata, false)
		}
	case TypeHangup, TypeReject:
		if _, err = parseHangup(content, max); err == nil {
			c.clientHangup()
		}
	case TypeMetadataChanged:
		var m *metadataContent
		if m, err = parseMetadataChanged(content, max); err == nil {
			c.updateMeta(m.Metadata)
		}
	case TypeSelectAnswer:
		// The focus is the only answerer; nothing to select.
	}
	if err != nil {
		c.f.m.dropped.WithLabelValues("malformed").Inc()
		c.f.log.Info("malformed call event", "type", typ, "participant", c.pid, "err", err)
	}
}

func (c *call) addCandidates(list []candidate) {
	c.mu.Lock()
	p := c.p
	c.mu.Unlock()
	if p == nil {
		return
	}
	for _, ca := range list {
		if ca.Candidate == "" {
			continue // end of candidates
		}
		err := p.AddICECandidate(webrtc.ICECandidateInit{Candidate: ca.Candidate, SDPMid: ca.SDPMid,
			SDPMLineIndex: ca.SDPMLineIndex, UsernameFragment: ca.UsernameFragment})
		if err != nil {
			c.f.log.Debug("client candidate refused", "participant", c.pid, "err", err)
		}
	}
}

// negotiate applies a client's m.call.negotiate: an answer to a server
// offer, or a client offer (tracks added or removed, ICE restart), which
// is answered on the transport it came by.
func (c *call) negotiate(ctx context.Context, d sessionDescription, meta map[string]streamMeta, viaDC bool) {
	c.mu.Lock()
	p := c.p
	c.mu.Unlock()
	if p == nil {
		return
	}
	c.updateMeta(meta)
	if d.Type == "answer" {
		if err := p.HandleAnswer(d.SDP); err != nil {
			c.f.log.Info("client answer refused", "participant", c.pid, "err", err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.f.cfg.JoinTimeout)
	defer cancel()
	ans, err := p.HandleOffer(ctx, d.SDP)
	if err != nil {
		// ErrGlare: the client answers the pending server offer and
		// offers again (the focus is the impolite peer).
		c.f.log.Info("client offer refused", "participant", c.pid, "err", err)
		return
	}
	body := map[string]any{
		"description":         sessionDescription{Type: "answer", SDP: ans},
		"sdp_stream_metadata": c.metadata(),
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if viaDC && c.sendData(TypeNegotiate, body) == nil {
		return
	}
	c.sendToDeviceLocked(TypeNegotiate, body)
}

// onData handles an MSC3898 data-channel message from the client.
func (c *call) onData(b []byte) {
	max := c.f.cfg.MaxContentBytes
	msg, err := parseDataMessage(b, max)
	if err != nil {
		c.f.m.dropped.WithLabelValues("malformed").Inc()
		c.f.log.Info("malformed data-channel message", "participant", c.pid, "err", err)
		return
	}
	c.f.m.messages.WithLabelValues("data_channel", typeLabel(msg.Type)).Inc()
	if c.markDCOpen(c.f.cfg.Now(), true) {
		c.dcOpened()
	}
	switch msg.Type {
	case TypePong:
	case TypePing:
		_ = c.sendData(TypePong, struct{}{})
	case TypeTrackSubscription:
		var s *trackSubscription
		if s, err = parseTrackSubscription(msg.Content, max); err == nil {
			c.subscribe(s)
		}
	case TypeNegotiate:
		var n *negotiateContent
		if n, err = parseNegotiateBody(msg.Content, max); err == nil {
			c.negotiate(context.Background(), n.Description, n.Metadata, true)
		}
	case TypeMetadataChanged:
		var m *metadataContent
		if m, err = parseMetadataBody(msg.Content, max); err == nil {
			c.updateMeta(m.Metadata)
		}
	case TypeHangup:
		c.end("")
	default:
		c.f.m.dropped.WithLabelValues("unknown_type").Inc()
	}
	if err != nil {
		c.f.m.dropped.WithLabelValues("malformed").Inc()
		c.f.log.Info("malformed data-channel message", "type", msg.Type, "participant", c.pid, "err", err)
	}
}

// subscribe applies m.call.track_subscription; the SFU renegotiates.
func (c *call) subscribe(s *trackSubscription) {
	c.mu.Lock()
	p := c.p
	c.mu.Unlock()
	if p == nil {
		return
	}
	subs := make([]sfu.Subscription, 0, len(s.Subscribe))
	for _, r := range s.Subscribe {
		subs = append(subs, sfu.Subscription{TrackID: r.TrackID, MaxWidth: r.Width, MaxHeight: r.Height})
	}
	unsubs := make([]string, 0, len(s.Unsubscribe))
	for _, r := range s.Unsubscribe {
		unsubs = append(unsubs, r.TrackID)
	}
	if err := p.UpdateSubscriptions(subs, unsubs); err != nil {
		c.f.log.Debug("subscription change", "participant", c.pid, "err", err)
	}
}
