package livekit

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/livekit/protocol/livekit"

	"github.com/switchboard-chat/switchboard/sfu"
)

// ServerConfig configures the LiveKit signalling server.
type ServerConfig struct {
	// SFU carries the media. Required; the server does not close it.
	SFU *sfu.SFU
	// APIKey and APISecret check access tokens (the TokenService's).
	// Required.
	APIKey, APISecret string
	// MaxMessageBytes bounds one signal message. Default 256 KiB (SDP
	// offers with many m-lines are large).
	MaxMessageBytes int64
	// MessageRate and MessageBurst bound the signal messages one client
	// may send (token bucket, per second). Defaults 50/s and 200.
	MessageRate  float64
	MessageBurst int
	// PingInterval and PingTimeout are told to clients; a client silent
	// for PingTimeout is disconnected. Defaults 5 s and 15 s.
	PingInterval, PingTimeout time.Duration
	// JoinTimeout bounds the SFU join (ICE gathering). Default 10 s.
	JoinTimeout time.Duration
	// RoomState, when set, lets the server remove participants whose
	// Matrix user left the room or whose call membership ended
	// (members.go), checked every CheckInterval (default 5 s).
	RoomState     RoomState
	CheckInterval time.Duration
	// Presence, when set, is told when a participant whose token names
	// a Matrix member joins the conference and when it leaves (hangs
	// up, its socket dies, it is removed or replaced): the homeserver's
	// delegated delayed leave (MSC4195) follows it.
	Presence Presence
	// ResumeWindow is how long a participant whose signal connection was
	// lost (no leave) is kept for the client to resume it (resume.go);
	// then it leaves. Default 15 s.
	ResumeWindow time.Duration
	// QualityInterval is how often every participant is sent the
	// connection quality of everyone in its conference (quality.go).
	// Default 5 s.
	QualityInterval time.Duration
	// Peers, when set, names the Matrix user and device of SFU
	// participants of the native focus sharing a room's conference
	// (foreign.go); without it they are named by their SFU IDs.
	Peers PeerDirectory
	// Logger receives client mistakes at Info or Debug. Default
	// slog.Default().
	Logger *slog.Logger
}

func (c *ServerConfig) validateAndDefault() error {
	if c.CheckInterval <= 0 {
		c.CheckInterval = 5 * time.Second
	}
	if c.ResumeWindow <= 0 {
		c.ResumeWindow = 15 * time.Second
	}
	if c.QualityInterval <= 0 {
		c.QualityInterval = 5 * time.Second
	}
	if c.SFU == nil {
		return fmt.Errorf("%w: no SFU", ErrInvalidConfig)
	}
	if c.APIKey == "" || len(c.APISecret) < 32 {
		return fmt.Errorf("%w: API key missing or secret shorter than 32 bytes", ErrInvalidConfig)
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 256 << 10
	}
	if c.MessageRate <= 0 {
		c.MessageRate = 50
	}
	if c.MessageBurst <= 0 {
		c.MessageBurst = 200
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 5 * time.Second
	}
	if c.PingTimeout <= c.PingInterval {
		c.PingTimeout = 3 * c.PingInterval
	}
	if c.JoinTimeout <= 0 {
		c.JoinTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Presence learns who is on the SFU. cmd/switchboard hands the
// homeserver's RTCParticipantConnected and RTCParticipantDisconnected to
// it. Calls for one member come in order (connected before
// disconnected); one member may be connected twice while a reconnect
// replaces the older session.
type Presence interface {
	ParticipantConnected(m MatrixMember)
	ParticipantDisconnected(m MatrixMember)
}

// serverVersion is the LiveKit server version reported to clients: the
// protocol features implemented here are those of LiveKit 1.9's single
// PeerConnection signalling.
const serverVersion = "1.9.0"

// Server speaks LiveKit's signalling protocol (protobuf SignalRequest and
// SignalResponse over a WebSocket) with livekit-client, over the SFU. It
// serves, under any prefix: /rtc/v1 (the single PeerConnection path that
// livekit-client 2.x uses first: the client makes every offer, the SFU
// asks for receive-only m-lines with MediaSectionsRequirement) and
// /rtc/v1/validate. Every LiveKit room is one SFU conference; the call
// of a Matrix room is the conference the native focus uses for the room
// too (rtcroom.Conference), whose other participants are presented as
// LiveKit participants (foreign.go).
//
// Lock order: Server.mu before room.mu before session.mu; no lock is held
// while the SFU is called.
type Server struct {
	cfg  ServerConfig
	keys keys
	log  *slog.Logger

	// wg tracks sessions; watch the membership and quality watchers.
	wg        sync.WaitGroup
	watch     sync.WaitGroup
	stopWatch chan struct{}
	checks    atomic.Int64 // membership check rounds done

	// mu guards the fields below.
	mu       sync.Mutex
	rooms    map[string]*room
	sessions map[string]*session // by participant SID, for Peer
	closed   bool
}

// NewServer validates cfg and returns the server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.validateAndDefault(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, keys: keys{cfg.APIKey, cfg.APISecret}, stopWatch: make(chan struct{}),
		log: cfg.Logger.With("component", "livekit"), rooms: make(map[string]*room),
		sessions: make(map[string]*session)}
	if cfg.RoomState != nil {
		s.watch.Go(func() { s.watchMembers(s.stopWatch) })
	}
	s.watch.Go(func() { s.watchQuality(s.stopWatch) })
	return s, nil
}

// Close disconnects every client and waits for their sessions to end.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		close(s.stopWatch)
	}
	s.closed = true
	var all []*session
	for _, r := range s.rooms {
		all = append(all, r.list(nil)...)
	}
	s.mu.Unlock()
	for _, ss := range all {
		ss.end(livekit.DisconnectReason_SERVER_SHUTDOWN, "server shutting down")
	}
	s.wg.Wait()
	s.watch.Wait()
}

// newID is a LiveKit-style ID: prefix and 12 random base32 characters.
func newID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + strings.ToUpper(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))[:12]
}

// ServeHTTP serves the signal WebSocket and its validate endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case strings.HasSuffix(path, "/rtc/v1/validate"), strings.HasSuffix(path, "/rtc/validate"):
		// livekit-client fetches validate from the page's origin after a
		// failed connect to learn why; like a LiveKit server, any origin
		// may read the answer (the token in the query authenticates).
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if _, err := s.keys.verify(r.URL.Query().Get("access_token")); err != nil {
			http.Error(w, "invalid token: "+err.Error(), http.StatusUnauthorized)
			return
		}
		if strings.HasSuffix(path, "/rtc/validate") {
			http.Error(w, "only the /rtc/v1 signal path is served", http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte("success"))
	case strings.HasSuffix(path, "/rtc/v1"):
		s.serveSignal(w, r)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

// serveSignal authenticates (401 before the upgrade), parses the join
// request, upgrades and runs the session.
func (s *Server) serveSignal(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	g, err := s.keys.verify(q.Get("access_token"))
	if err != nil {
		s.log.Info("signal connection refused", "err", err)
		http.Error(w, "invalid token", http.StatusUnauthorized)
		return
	}
	jr, err := parseJoinRequest(q.Get("join_request"))
	if err != nil {
		s.log.Info("signal connection refused", "identity", g.Identity, "err", err)
		http.Error(w, "malformed join request", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	if jr.GetReconnect() {
		s.serveResume(w, r, g, jr)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// The access token authenticates; Element Call is served from
		// another origin than the SFU.
		InsecureSkipVerify: true,
	})
	if err != nil {
		s.log.Info("websocket upgrade failed", "err", err)
		return
	}
	ws.SetReadLimit(s.cfg.MaxMessageBytes)
	ss := newSession(s, ws, g, jr)
	ss.run(r.Context())
}

// room is one LiveKit room: the sessions in one SFU conference.
type room struct {
	name, sid string
	created   int64

	// mu guards sessions.
	mu       sync.Mutex
	sessions map[string]*session // by participant SID
}

// join adds ss to its room (created on first join) and queues its
// JoinResponse. An older session of the same identity is taken out of
// the room and returned so that the caller ends it (LiveKit: a duplicate
// identity replaces the participant); the JoinResponse does not list it.
//
// The JoinResponse is queued in the same step as ss enters the room, so
// it is the first message ss gets: a broadcast that finds ss in the room
// comes after it (livekit-client fails a connect whose first message is
// anything else: "did not receive join response, got update instead"),
// and it lists every participant as the broadcasts that miss ss left it.
func (s *Server) join(ss *session) (*room, *session) {
	ice := s.iceServers()
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[ss.grant.Room]
	if r == nil {
		r = &room{name: ss.grant.Room, sid: newID("RM_"), created: time.Now().Unix(), sessions: map[string]*session{}}
		s.rooms[r.name] = r
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var old *session
	for sid, o := range r.sessions {
		if o.grant.Identity == ss.grant.Identity {
			old = o
			delete(r.sessions, sid)
		}
	}
	others := make([]*livekit.ParticipantInfo, 0, len(r.sessions))
	for _, o := range r.sessions {
		others = append(others, o.info(livekit.ParticipantInfo_ACTIVE))
	}
	r.sessions[ss.sid] = ss
	s.sessions[ss.sid] = ss
	ss.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Join{Join: &livekit.JoinResponse{
		Room:        &livekit.Room{Sid: r.sid, Name: r.name, CreationTime: r.created, NumParticipants: uint32(len(r.sessions))},
		Participant: ss.info(livekit.ParticipantInfo_JOINED), OtherParticipants: others,
		ServerVersion: serverVersion, IceServers: ice, ServerInfo: serverInfo(),
		PingTimeout: int32(s.cfg.PingTimeout / time.Second), PingInterval: int32(s.cfg.PingInterval / time.Second),
	}}})
	return r, old
}

// iceServers are the SFU's STUN/TURN servers in LiveKit's form.
func (s *Server) iceServers() []*livekit.ICEServer {
	var ice []*livekit.ICEServer
	for _, is := range s.cfg.SFU.ICEServers() {
		cred, _ := is.Credential.(string)
		ice = append(ice, &livekit.ICEServer{Urls: is.URLs, Username: is.Username, Credential: cred})
	}
	return ice
}

func serverInfo() *livekit.ServerInfo {
	return &livekit.ServerInfo{Edition: livekit.ServerInfo_Standard, Version: serverVersion,
		Protocol: 16, NodeId: "switchboard"}
}

// leave removes ss from its room, and the room when it is empty.
func (s *Server) leave(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ss.room
	r.mu.Lock()
	if r.sessions[ss.sid] == ss {
		delete(r.sessions, ss.sid)
	}
	empty := len(r.sessions) == 0
	r.mu.Unlock()
	if s.sessions[ss.sid] == ss {
		delete(s.sessions, ss.sid)
	}
	if empty && s.rooms[r.name] == r {
		delete(s.rooms, r.name)
	}
}

// list returns the room's sessions but skip.
func (r *room) list(skip *session) []*session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*session, 0, len(r.sessions))
	for _, o := range r.sessions {
		if o != skip {
			out = append(out, o)
		}
	}
	return out
}

func (r *room) get(sid string) *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessions[sid]
}

// broadcast sends msg to every session of the room but skip. A replaced
// session (skip, the sender) says nothing more: the room was told it left.
func (r *room) broadcast(skip *session, msg *livekit.SignalResponse) {
	if skip != nil {
		skip.mu.Lock()
		replaced := skip.replaced
		skip.mu.Unlock()
		if replaced {
			return
		}
	}
	for _, o := range r.list(skip) {
		o.send(msg)
	}
}
