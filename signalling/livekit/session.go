package livekit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-chat/switchboard/sfu"
)

// outQueue is how many signal messages may wait for a slow client; a
// client that lets more pile up is disconnected.
const outQueue = 256

// session is one livekit-client connection: a participant of a room,
// with one SFU participant once its first offer is answered.
type session struct {
	s        *Server
	grant    Grant
	sid      string
	joinReq  *livekit.JoinRequest
	room     *room
	out      chan *livekit.SignalResponse
	done     chan struct{}
	endOnce  sync.Once
	limiter  *rate.Limiter
	joinedAt int64

	// resume hands a resumed connection to run (resume.go).
	resume chan resumeReq

	// mu guards the fields below.
	mu sync.Mutex
	// ws is the current signal connection; noResume is set once the
	// session takes no more resumes.
	ws       *websocket.Conn
	noResume bool
	p        *sfu.Participant
	joining  bool
	pending  []webrtc.ICECandidateInit // client candidates before the SFU join
	tracks   map[string]*livekit.TrackInfo
	cids     map[string]string // client track ID (cid) -> track SID
	unwanted map[string]bool   // tracks the client unsubscribed from
	wanted   map[string]bool   // tracks the client subscribed to
	// early is the last track list the SFU gave before p was set: the
	// SFU's worker may tell a new participant what it can receive before
	// Join has returned it (sfu.Conference.joined), and those tracks are
	// subscribed to once it has.
	early []sfu.TrackInfo
	// replaced: a newer connection of the same identity took over; the
	// room was told this one left when it did.
	replaced bool
	version  uint32
	// foreign: the participants of the other protocol the client was
	// told of, by SFU participant ID; foreignTracks their tracks by
	// LiveKit track SID (foreign.go).
	foreign       map[string]*foreignPeer
	foreignTracks map[string]foreignTrack
	// memberSeen: the Matrix call membership was seen (members.go).
	memberSeen bool
	closeCode  websocket.StatusCode
	closeWhy   string
}

func newSession(s *Server, ws *websocket.Conn, g Grant, jr *livekit.JoinRequest) *session {
	return &session{
		s: s, ws: ws, grant: g, sid: newID("PA_"), joinReq: jr, resume: make(chan resumeReq, 1),
		out: make(chan *livekit.SignalResponse, outQueue), done: make(chan struct{}),
		limiter:  rate.NewLimiter(rate.Limit(s.cfg.MessageRate), s.cfg.MessageBurst),
		joinedAt: time.Now().Unix(),
		tracks:   map[string]*livekit.TrackInfo{}, cids: map[string]string{}, unwanted: map[string]bool{},
		wanted: map[string]bool{}, foreign: map[string]*foreignPeer{},
		closeCode: websocket.StatusNormalClosure,
	}
}

// autoSubscribe reports whether the client asked to receive every track
// (ConnectionSettings.auto_subscribe, livekit-client's default).
func (ss *session) autoSubscribe() bool {
	cs := ss.joinReq.GetConnectionSettings()
	return cs == nil || cs.AutoSubscribe
}

// info describes the participant to others (and to itself).
func (ss *session) info(state livekit.ParticipantInfo_State) *livekit.ParticipantInfo {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.infoLocked(state)
}

func (ss *session) infoLocked(state livekit.ParticipantInfo_State) *livekit.ParticipantInfo {
	ss.version++
	tracks := make([]*livekit.TrackInfo, 0, len(ss.tracks))
	for _, t := range ss.tracks {
		tracks = append(tracks, proto.CloneOf(t))
	}
	return &livekit.ParticipantInfo{
		Sid: ss.sid, Identity: ss.grant.Identity, State: state, Tracks: tracks,
		JoinedAt: ss.joinedAt, Version: ss.version, IsPublisher: len(tracks) > 0,
		Permission: &livekit.ParticipantPermission{CanSubscribe: ss.grant.CanSubscribe,
			CanPublish: ss.grant.CanPublish, CanPublishData: ss.grant.CanPublish},
	}
}

// send queues a message for the client; a client that does not read is
// disconnected.
func (ss *session) send(msg *livekit.SignalResponse) {
	select {
	case <-ss.done:
	case ss.out <- msg:
	default:
		ss.closeWith(websocket.StatusPolicyViolation, "client too slow")
	}
}

// closeWith records why the WebSocket closes and ends the session.
func (ss *session) closeWith(code websocket.StatusCode, why string) {
	ss.mu.Lock()
	if ss.closeWhy == "" {
		ss.closeCode, ss.closeWhy = code, why
	}
	ss.mu.Unlock()
	ss.finish()
}

func (ss *session) finish() { ss.endOnce.Do(func() { close(ss.done) }) }

func (ss *session) ended() bool {
	select {
	case <-ss.done:
		return true
	default:
		return false
	}
}

// end tells the client to leave and ends the session.
func (ss *session) end(reason livekit.DisconnectReason, why string) {
	ss.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Leave{Leave: &livekit.LeaveRequest{
		Reason: reason, Action: livekit.LeaveRequest_DISCONNECT}}})
	ss.closeWith(websocket.StatusNormalClosure, why)
}

// run is the life of the session: join the room, answer the join offer,
// read requests until the client leaves or breaks the protocol, then
// clean up.
func (ss *session) run(ctx context.Context) {
	log := ss.s.log.With("participant", ss.sid, "identity", ss.grant.Identity, "room", ss.grant.Room)
	r, old := ss.s.join(ss)
	ss.room = r
	if pr, m := ss.s.cfg.Presence, ss.grant.Matrix; pr != nil && m.UserID != "" {
		pr.ParticipantConnected(m)
		defer func() {
			// A server shutting down is not the participant leaving:
			// clients reconnect after a restart.
			ss.s.mu.Lock()
			closing := ss.s.closed
			ss.s.mu.Unlock()
			if !closing {
				pr.ParticipantDisconnected(m)
			}
		}()
	}
	if old != nil {
		// As a LiveKit server does, the room hears that the old
		// participant left before it hears of the new one: livekit-client
		// keeps remote participants by identity, so the old one's leave
		// arriving after the new one's join would remove the new one.
		old.mu.Lock()
		old.replaced = true
		pi := old.infoLocked(livekit.ParticipantInfo_DISCONNECTED)
		old.mu.Unlock()
		pi.DisconnectReason = livekit.DisconnectReason_DUPLICATE_IDENTITY
		r.broadcast(ss, update(pi))
		old.end(livekit.DisconnectReason_DUPLICATE_IDENTITY, "replaced by a new connection")
	}
	ss.mu.Lock()
	ws := ss.ws
	ss.mu.Unlock()
	lost := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		ss.writeLoop(ws, lost)
	}()
	r.broadcast(ss, update(ss.info(livekit.ParticipantInfo_JOINED)))
	log.Info("participant joined")
	if off := ss.joinReq.GetPublisherOffer(); off != nil {
		ss.handleOffer(ctx, off)
	}
	var readErr error
	var resumed []resumeReq
	for {
		readErr = ss.readLoop(ctx, ws)
		if ss.ended() {
			break
		}
		// The signal connection was lost, not ended: the participant
		// waits for the client to resume (resume.go).
		close(lost)
		<-writerDone
		log.Info("signal connection lost; waiting for a resume", "err", readErr)
		rs, ok := ss.awaitResume()
		if !ok {
			break
		}
		resumed = append(resumed, rs)
		ws, ctx = rs.ws, rs.ctx
		lost, writerDone = make(chan struct{}), make(chan struct{})
		ss.resumeOn(ws)
		go func() {
			defer close(writerDone)
			ss.writeLoop(ws, lost)
		}()
		log.Info("participant resumed")
	}
	ss.finish()
	<-writerDone
	ss.refuseResumes()
	for _, rs := range resumed {
		close(rs.release)
	}

	ss.mu.Lock()
	p := ss.p
	why := ss.closeWhy
	replaced := ss.replaced
	ss.mu.Unlock()
	if p != nil {
		_ = p.Close()
	}
	ss.s.leave(ss)
	if !replaced {
		r.broadcast(ss, update(ss.info(livekit.ParticipantInfo_DISCONNECTED)))
	}
	log.Info("participant left", "reason", why, "err", readErr)
}

func update(pi *livekit.ParticipantInfo) *livekit.SignalResponse {
	return &livekit.SignalResponse{Message: &livekit.SignalResponse_Update{
		Update: &livekit.ParticipantUpdate{Participants: []*livekit.ParticipantInfo{pi}}}}
}

// writeLoop sends queued messages on ws until the session ends, then
// flushes what is queued (a leave) and closes ws with the recorded status
// and reason. When the connection is lost (lost closed, or a write
// fails) it stops and leaves the queue to the resumed connection.
func (ss *session) writeLoop(ws *websocket.Conn, lost <-chan struct{}) {
	for {
		select {
		case <-lost:
			_ = ws.CloseNow()
			return
		case <-ss.done:
			for {
				select {
				case msg := <-ss.out:
					if writeMsg(ws, msg) != nil {
						_ = ws.CloseNow()
						return
					}
				default:
					ss.mu.Lock()
					code, why := ss.closeCode, ss.closeWhy
					ss.mu.Unlock()
					if why == "" {
						why = "connection closed"
					}
					_ = ws.Close(code, why)
					return
				}
			}
		case msg := <-ss.out:
			if err := writeMsg(ws, msg); err != nil {
				// The reader sees the loss; the message is lost with
				// the connection.
				_ = ws.CloseNow()
				select {
				case <-lost:
				case <-ss.done:
				}
				return
			}
		}
	}
}

// writeMsg sends one message on ws.
func writeMsg(ws *websocket.Conn, msg *livekit.SignalResponse) error {
	b, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return ws.Write(ctx, websocket.MessageBinary, b)
}

// readLoop reads and handles requests on ws until the session ends or
// the connection is lost (the client silent for PingTimeout, or gone).
func (ss *session) readLoop(ctx context.Context, ws *websocket.Conn) error {
	// Reads end when the writer's close handshake completes (the session
	// ended here) or the client goes away; cancelling a read would drop
	// the connection without a close frame.
	for {
		rctx, rcancel := context.WithTimeout(ctx, ss.s.cfg.PingTimeout)
		typ, b, err := ws.Read(rctx)
		rcancel()
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.StatusMessageTooBig {
				ss.closeWith(websocket.StatusMessageTooBig, "message too big")
			}
			return err
		}
		if !ss.limiter.Allow() {
			ss.closeWith(websocket.StatusPolicyViolation, "too many signal messages")
			return fmt.Errorf("%w: flood", ErrProtocol)
		}
		if typ != websocket.MessageBinary {
			ss.closeWith(websocket.StatusUnsupportedData, "signal messages are binary protobuf")
			return fmt.Errorf("%w: text message", ErrProtocol)
		}
		req, err := decodeRequest(b)
		if err != nil {
			ss.closeWith(websocket.StatusUnsupportedData, "malformed signal message")
			return err
		}
		if leave := ss.handle(ctx, req); leave {
			ss.closeWith(websocket.StatusNormalClosure, "client left")
			return nil
		}
	}
}

// handle acts on one request; it reports whether the client left.
func (ss *session) handle(ctx context.Context, req *livekit.SignalRequest) bool {
	switch m := req.Message.(type) {
	case *livekit.SignalRequest_Offer:
		ss.handleOffer(ctx, m.Offer)
	case *livekit.SignalRequest_Trickle:
		ss.handleTrickle(m.Trickle)
	case *livekit.SignalRequest_AddTrack:
		ss.handleAddTrack(m.AddTrack)
	case *livekit.SignalRequest_Mute:
		ss.handleMute(m.Mute)
	case *livekit.SignalRequest_Subscription:
		ss.handleSubscription(m.Subscription)
	case *livekit.SignalRequest_TrackSetting:
		ss.handleTrackSetting(m.TrackSetting)
	case *livekit.SignalRequest_Leave:
		return true
	case *livekit.SignalRequest_Ping:
		ss.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Pong{Pong: m.Ping}})
	case *livekit.SignalRequest_PingReq:
		ss.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_PongResp{PongResp: &livekit.Pong{
			LastPingTimestamp: m.PingReq.GetTimestamp(), Timestamp: time.Now().UnixMilli()}}})
	default:
		// Answers (no server offers here), layer and permission updates,
		// metadata and the rest: accepted, not acted on.
		ss.s.log.Debug("signal request ignored", "type", fmt.Sprintf("%T", m))
	}
	return false
}

// handleOffer applies a client offer: the first joins the SFU, later ones
// renegotiate. The answer carries the request's ID and which track each
// m-line sends.
func (ss *session) handleOffer(ctx context.Context, off *livekit.SessionDescription) {
	if off.GetType() != "offer" && off.GetType() != "" {
		return
	}
	ss.mu.Lock()
	p, joining := ss.p, ss.joining
	if p == nil {
		ss.joining = true
	}
	ss.mu.Unlock()
	if joining && p == nil {
		ss.s.log.Info("offer while joining ignored", "participant", ss.sid)
		return
	}
	start := time.Now()
	sdp := rewriteMsid(off.GetSdp(), publishedIDs(ss.sid, ss.trackSID))
	jctx, cancel := context.WithTimeout(ctx, ss.s.cfg.JoinTimeout)
	defer cancel()
	var answer string
	var err error
	if p == nil {
		p, answer, err = ss.s.cfg.SFU.Join(jctx, ss.conference(), ss.sid, sdp, ss.handler())
		if err == nil {
			ss.mu.Lock()
			ss.p = p
			cands := ss.pending
			ss.pending = nil
			early := ss.early
			ss.early = nil
			wanted := make([]sfu.Subscription, 0, len(ss.wanted))
			for id := range ss.wanted {
				wanted = append(wanted, sfu.Subscription{TrackID: id})
			}
			ss.mu.Unlock()
			for _, c := range cands {
				_ = p.AddICECandidate(c)
			}
			// What the SFU or the client asked for while the join was
			// on its way.
			if early != nil {
				ss.subscribeAll(early)
			}
			if len(wanted) > 0 && ss.grant.CanSubscribe {
				_ = p.UpdateSubscriptions(wanted, nil)
			}
		}
	} else {
		answer, err = p.HandleOffer(jctx, sdp)
	}
	if err != nil {
		ss.s.log.Info("offer failed", "participant", ss.sid, "err", err)
		if errors.Is(err, sfu.ErrInvalidSDP) {
			ss.closeWith(websocket.StatusUnsupportedData, "invalid offer")
		} else {
			ss.end(livekit.DisconnectReason_JOIN_FAILURE, "join failed")
		}
		return
	}
	answer = ss.rewriteAnswer(answer)
	ss.s.log.Debug("offer answered", "participant", ss.sid, "offer_id", off.GetId(), "took", time.Since(start))
	ss.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Answer{Answer: &livekit.SessionDescription{
		Type: "answer", Sdp: answer, Id: off.GetId(), MidToTrackId: midToTrack(answer)}}})
}

// trackSID resolves a client track ID (cid) to its track SID.
func (ss *session) trackSID(cid string) (string, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	sid, ok := ss.cids[cid]
	return sid, ok
}

func (ss *session) handleTrickle(t *livekit.TrickleRequest) {
	var c webrtc.ICECandidateInit
	if err := json.Unmarshal([]byte(t.GetCandidateInit()), &c); err != nil {
		ss.s.log.Debug("malformed candidate", "participant", ss.sid, "err", err)
		return
	}
	ss.mu.Lock()
	p := ss.p
	if p == nil {
		if len(ss.pending) < 64 {
			ss.pending = append(ss.pending, c)
		}
		ss.mu.Unlock()
		return
	}
	ss.mu.Unlock()
	if err := p.AddICECandidate(c); err != nil {
		ss.s.log.Debug("candidate refused", "participant", ss.sid, "err", err)
	}
}

// maxTracks bounds the tracks one participant may announce.
const maxTracks = 16

func (ss *session) handleAddTrack(req *livekit.AddTrackRequest) {
	if !ss.grant.CanPublish || req.GetCid() == "" {
		return
	}
	ss.mu.Lock()
	if _, dup := ss.cids[req.Cid]; dup || len(ss.tracks) >= maxTracks {
		ss.mu.Unlock()
		return
	}
	ti := &livekit.TrackInfo{
		Sid: newID("TR_"), Type: req.Type, Name: req.Name, Source: req.Source, Muted: req.Muted,
		Width: req.Width, Height: req.Height, Layers: req.Layers, Simulcast: len(req.Layers) > 1,
		DisableDtx: req.DisableDtx, Stereo: req.Stereo, Encryption: req.Encryption, Stream: req.Stream,
		AudioFeatures: req.AudioFeatures, BackupCodecPolicy: req.BackupCodecPolicy,
	}
	ss.cids[req.Cid] = ti.Sid
	ss.tracks[ti.Sid] = ti
	pi := ss.infoLocked(livekit.ParticipantInfo_ACTIVE)
	ss.mu.Unlock()
	ss.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_TrackPublished{
		TrackPublished: &livekit.TrackPublishedResponse{Cid: req.Cid, Track: proto.CloneOf(ti)}}})
	ss.room.broadcast(ss, update(pi))
}

func (ss *session) handleMute(m *livekit.MuteTrackRequest) {
	ss.mu.Lock()
	t := ss.tracks[m.GetSid()]
	if t == nil {
		ss.mu.Unlock()
		return
	}
	t.Muted = m.Muted
	pi := ss.infoLocked(livekit.ParticipantInfo_ACTIVE)
	ss.mu.Unlock()
	ss.room.broadcast(ss, update(pi))
}

func (ss *session) handleSubscription(u *livekit.UpdateSubscription) {
	ids := append([]string(nil), u.GetTrackSids()...)
	for _, pt := range u.GetParticipantTracks() {
		ids = append(ids, pt.GetTrackSids()...)
	}
	for i, id := range ids {
		ids[i] = ss.sfuTrack(id)
	}
	ss.mu.Lock()
	p := ss.p
	for _, id := range ids {
		ss.unwanted[id] = !u.Subscribe
		if u.Subscribe {
			ss.wanted[id] = true
		} else {
			delete(ss.wanted, id)
		}
	}
	ss.mu.Unlock()
	if p == nil || !ss.grant.CanSubscribe {
		return
	}
	if u.Subscribe {
		subs := make([]sfu.Subscription, 0, len(ids))
		for _, id := range ids {
			subs = append(subs, sfu.Subscription{TrackID: id})
		}
		_ = p.UpdateSubscriptions(subs, nil)
	} else {
		_ = p.UpdateSubscriptions(nil, ids)
	}
}

// handleTrackSetting applies a subscriber's wishes for tracks it
// receives: disabled stops them, a size picks the simulcast layer.
func (ss *session) handleTrackSetting(u *livekit.UpdateTrackSettings) {
	ss.mu.Lock()
	p := ss.p
	ss.mu.Unlock()
	if p == nil || !ss.grant.CanSubscribe {
		return
	}
	ids := make([]string, 0, len(u.GetTrackSids()))
	for _, id := range u.GetTrackSids() {
		ids = append(ids, ss.sfuTrack(id))
	}
	if u.Disabled {
		_ = p.UpdateSubscriptions(nil, ids)
		return
	}
	subs := make([]sfu.Subscription, 0, len(ids))
	for _, id := range ids {
		subs = append(subs, sfu.Subscription{TrackID: id, MaxWidth: int(u.Width), MaxHeight: int(u.Height)})
	}
	_ = p.UpdateSubscriptions(subs, nil)
}

// handler is the SFU's view of the session.
func (ss *session) handler() sfu.Handler {
	return sfu.Handler{
		OnICECandidate: func(c webrtc.ICECandidateInit) {
			b, err := json.Marshal(c)
			if err != nil {
				return
			}
			ss.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Trickle{Trickle: &livekit.TrickleRequest{
				CandidateInit: string(b), Target: livekit.SignalTarget_PUBLISHER}}})
		},
		OnOfferNeeded: func(audio, video int) {
			ss.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_MediaSectionsRequirement{
				MediaSectionsRequirement: &livekit.MediaSectionsRequirement{NumAudios: uint32(audio), NumVideos: uint32(video)}}})
		},
		OnTracks:      ss.onTracks,
		OnSpeakers:    ss.onSpeakers,
		OnDataMessage: ss.onData,
		OnClose: func(reason error) {
			if !errors.Is(reason, sfu.ErrLeft) {
				ss.end(livekit.DisconnectReason_STATE_MISMATCH, "media connection lost")
			}
		},
	}
}

// onTracks tells the client of the foreign participants in the list
// (foreign.go) and subscribes an auto-subscribing client to every track
// it has not declined. A list that comes before the SFU join has
// returned the participant is kept for handleOffer.
func (ss *session) onTracks(tis []sfu.TrackInfo) {
	ss.tellForeign(tis)
	ss.subscribeAll(tis)
}

// tellForeign sends the participant updates of foreign participants.
func (ss *session) tellForeign(tis []sfu.TrackInfo) {
	if ups := ss.foreignUpdates(tis); len(ups) > 0 {
		ss.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Update{
			Update: &livekit.ParticipantUpdate{Participants: ups}}})
	}
}

func (ss *session) subscribeAll(tis []sfu.TrackInfo) {
	if !ss.autoSubscribe() || !ss.grant.CanSubscribe {
		return
	}
	ss.mu.Lock()
	p := ss.p
	if p == nil {
		ss.early = tis
		ss.mu.Unlock()
		return
	}
	var subs []sfu.Subscription
	for _, ti := range tis {
		if !ss.unwanted[ti.TrackID] {
			subs = append(subs, sfu.Subscription{TrackID: ti.TrackID})
		}
	}
	ss.mu.Unlock()
	if p != nil && len(subs) > 0 {
		_ = p.UpdateSubscriptions(subs, nil)
	}
}

func (ss *session) onSpeakers(active []string, dominant string) {
	sp := make([]*livekit.SpeakerInfo, 0, len(active))
	for _, id := range active {
		level := float32(0.5)
		if id == dominant {
			level = 1
		}
		sp = append(sp, &livekit.SpeakerInfo{Sid: speakerSID(id), Level: level, Active: true})
	}
	ss.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_SpeakersChanged{
		SpeakersChanged: &livekit.SpeakersChanged{Speakers: sp}}})
}

// onData relays a data packet to the others in the room (or to the
// identities it names), stamped with its sender.
func (ss *session) onData(b []byte) {
	if !ss.grant.CanPublish {
		return
	}
	out, dest, ok := relayPacket(b, ss.sid, ss.grant.Identity)
	if !ok {
		return
	}
	for _, o := range ss.room.list(ss) {
		if len(dest) > 0 && !contains(dest, o.grant.Identity) {
			continue
		}
		o.mu.Lock()
		p := o.p
		o.mu.Unlock()
		if p != nil {
			_ = p.SendBinary(out)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
