package livekit

import (
	"context"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/livekit/protocol/livekit"
)

// Resuming a session after its signal connection was lost (a network
// change, a proxy dropping the WebSocket), the way livekit-client 2.x
// does it (RTCEngine.resumeConnection): it connects again with a join
// request saying reconnect and naming its participant SID; the server
// answers with a ReconnectResponse as the first message instead of a
// JoinResponse, and the client then offers an ICE restart on its
// PeerConnection. The participant, its tracks and subscriptions stay
// in the SFU throughout, and the others are told nothing.
//
// When the connection drops, run waits up to ResumeWindow for the
// client; a resume that finds no session (the window passed, the
// participant was replaced, or it never existed) is accepted and
// answered with a LeaveRequest whose action is RECONNECT, which makes
// livekit-client give up resuming and join afresh at once (a refused
// WebSocket would make it retry the resume instead).

// resumeReq is a resumed connection handed to the session: its
// WebSocket, the context of the request that carries it, and release,
// closed when the session is done with the connection (the handler
// serving the request returns then).
type resumeReq struct {
	ws      *websocket.Conn
	ctx     context.Context
	release chan struct{}
}

// serveResume serves a reconnect join request.
func (s *Server) serveResume(w http.ResponseWriter, r *http.Request, g Grant, jr *livekit.JoinRequest) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.log.Info("websocket upgrade failed", "err", err)
		return
	}
	ws.SetReadLimit(s.cfg.MaxMessageBytes)
	rs := resumeReq{ws: ws, ctx: r.Context(), release: make(chan struct{})}
	ss := s.resumable(jr.GetParticipantSid(), g)
	if ss == nil || !ss.offerResume(rs) {
		s.log.Info("resume refused; asking for a full reconnect", "participant", jr.GetParticipantSid(),
			"identity", g.Identity)
		refuseResume(ws)
		return
	}
	<-rs.release
}

// refuseResume tells a client to join afresh and closes its connection.
func refuseResume(ws *websocket.Conn) {
	msg := &livekit.SignalResponse{Message: &livekit.SignalResponse_Leave{Leave: &livekit.LeaveRequest{
		Reason: livekit.DisconnectReason_STATE_MISMATCH, Action: livekit.LeaveRequest_RECONNECT}}}
	if writeMsg(ws, msg) == nil {
		_ = ws.Close(websocket.StatusNormalClosure, "cannot resume; join again")
		return
	}
	_ = ws.CloseNow()
}

// resumable finds the session a reconnect names: same participant SID,
// identity and room as the token, and not replaced.
func (s *Server) resumable(sid string, g Grant) *session {
	s.mu.Lock()
	r := s.rooms[g.Room]
	s.mu.Unlock()
	if r == nil || sid == "" {
		return nil
	}
	ss := r.get(sid)
	if ss == nil || ss.grant.Identity != g.Identity {
		return nil
	}
	return ss
}

// offerResume hands rs to the session's run loop, and drops the current
// connection if the server still holds it (the client noticed the loss
// first). It reports false when the session takes no resume: ended,
// replaced, or a resume already pending.
func (ss *session) offerResume(rs resumeReq) bool {
	ss.mu.Lock()
	if ss.noResume || ss.replaced || ss.ended() {
		ss.mu.Unlock()
		return false
	}
	select {
	case ss.resume <- rs:
	default:
		ss.mu.Unlock()
		return false
	}
	old := ss.ws
	ss.mu.Unlock()
	if old != nil {
		_ = old.CloseNow()
	}
	return true
}

// awaitResume waits up to ResumeWindow for a resumed connection; without
// one the session ends.
func (ss *session) awaitResume() (resumeReq, bool) {
	t := time.NewTimer(ss.s.cfg.ResumeWindow)
	defer t.Stop()
	select {
	case rs := <-ss.resume:
		return rs, true
	case <-ss.done:
	case <-t.C:
		ss.closeWith(websocket.StatusGoingAway, "signal connection lost")
	}
	return resumeReq{}, false
}

// resumeOn makes ws the session's connection and answers the resume:
// the ReconnectResponse first (livekit-client drops anything before
// it), then what was queued meanwhile.
func (ss *session) resumeOn(ws *websocket.Conn) {
	ss.mu.Lock()
	ss.ws = ws
	ss.mu.Unlock()
	_ = writeMsg(ws, &livekit.SignalResponse{Message: &livekit.SignalResponse_Reconnect{
		Reconnect: &livekit.ReconnectResponse{IceServers: ss.s.iceServers(),
			ServerInfo: serverInfo()}}})
}

// refuseResumes makes an ended session take no more resumes and turns
// away one that came too late.
func (ss *session) refuseResumes() {
	ss.mu.Lock()
	ss.noResume = true
	ss.mu.Unlock()
	select {
	case rs := <-ss.resume:
		refuseResume(rs.ws)
		close(rs.release)
	default:
	}
}
