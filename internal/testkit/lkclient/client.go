// Package lkclient is a minimal Go LiveKit client for tests and the
// bench (bench/calls, signalling/livekit's media tests), shaped
// like livekit-client's join as Element Call makes it: an OpenID token
// from the homeserver, POST {livekit_service_url}/sfu/get (MSC4195,
// lk-jwt-service's request), then the LiveKit signalling WebSocket
// (/rtc/v1 with the JWT, protobuf messages of github.com/livekit/protocol)
// on a single PeerConnection: the client offers, publishing one Opus and
// one VP8 track (AddTrack first), and offers again with receive-only
// m-lines when the server asks (MediaSectionsRequirement). It times the
// join from the OpenID request to the first packet of a remote VP8 key
// frame, counts each publisher's video, asks for a key frame when video
// comes before one (as browsers do), and can drop its connection the way
// Element Call aborts a connect attempt (Abort).
package lkclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/internal/testkit/rtcclient"
)

// ErrProtocol is an unexpected answer from the token service or the
// signalling server.
var ErrProtocol = errors.New("lkclient: protocol error")

// Phases are the times a join reached, client side.
type Phases struct {
	Start      time.Time // the OpenID token request
	Token      time.Time // /sfu/get answered with a JWT
	Joined     time.Time // the JoinResponse arrived on the WebSocket
	Answered   time.Time // the answer to the first offer was applied
	FirstVideo time.Time // the first packet of a remote VP8 key frame
	// VideoBeforeKeyframe counts remote video packets before it.
	VideoBeforeKeyframe int
}

// Client is one LiveKit participant.
type Client struct {
	name   string
	pc     *webrtc.PeerConnection
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stop   chan struct{}

	negMu    sync.Mutex
	offering bool // an offer waits for its answer
	again    bool // the server asked for sections meanwhile
	offerID  uint32

	keyReq     atomic.Bool
	lastKeyReq atomic.Int64
	// dropEvery: with n > 1, every n-th media packet is not sent
	// (SetSendLoss), as a lossy uplink loses it.
	dropEvery atomic.Int64

	sid string // this participant's SID, from the JoinResponse
	// rtcURL and autoSubscribe make the signal URL again (Resume).
	rtcURL        string
	autoSubscribe bool
	lctx          context.Context // the background loops' context
	answers       atomic.Int64    // answers applied

	// wsMu guards ws, the signal connection (Resume replaces it).
	wsMu sync.Mutex
	ws   *websocket.Conn

	mu     sync.Mutex
	phases Phases
	errs   []error
	recv   map[string]*VideoFrom // remote video by publisher's participant SID
	// others is the last info of each remote participant, by identity
	// (as livekit-client keeps them), from the JoinResponse and updates.
	others map[string]*livekit.ParticipantInfo
	// quality is the last ConnectionQuality the server gave of each
	// participant, by SID.
	quality map[string]livekit.ConnectionQuality
}

// VideoFrom is what arrived of one publisher's video.
type VideoFrom struct {
	// Packets counts every video packet; BeforeKeyframe those before the
	// first packet of a key frame (a decoder drops them).
	Packets, BeforeKeyframe int
	// Keyframes counts the key frames that began.
	Keyframes int
}

// Join makes cli join the LiveKit room for Matrix room through the
// server at baseURL, publishing audio and video.
// With autoSubscribe false it asks (JoinRequest.connection_settings)
// for no subscriptions: a publisher that would otherwise take two
// receive-only m-lines per joiner.
func Join(ctx context.Context, hc *http.Client, baseURL string, cli *mautrix.Client, room id.RoomID, name string, autoSubscribe bool) (*Client, error) {
	c := &Client{name: name, stop: make(chan struct{}), recv: map[string]*VideoFrom{},
		others: map[string]*livekit.ParticipantInfo{}, quality: map[string]livekit.ConnectionQuality{}}
	c.phases.Start = time.Now()
	oid, err := cli.RequestOpenIDToken(ctx)
	if err != nil {
		return nil, fmt.Errorf("openid: %w", err)
	}
	body, _ := json.Marshal(map[string]any{"room": room.String(), "device_id": cli.DeviceID.String(),
		"openid_token": map[string]any{"access_token": oid.AccessToken, "token_type": oid.TokenType,
			"matrix_server_name": oid.MatrixServerName, "expires_in": oid.ExpiresIn}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/livekit/jwt/sfu/get", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	var tok struct{ URL, JWT string }
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || tok.JWT == "" || tok.URL == "" {
		return nil, fmt.Errorf("%w: /sfu/get: %s %v", ErrProtocol, resp.Status, err)
	}
	c.mark(&c.phases.Token)
	wsURL := strings.TrimSuffix(tok.URL, "/")
	if rest, ok := strings.CutPrefix(wsURL, "http"); ok {
		wsURL = "ws" + rest
	}
	c.rtcURL = wsURL + "/rtc/v1?access_token=" + url.QueryEscape(tok.JWT)
	c.autoSubscribe = autoSubscribe
	ws, first, err := c.dial(ctx, hc, &livekit.JoinRequest{})
	if err != nil {
		return nil, err
	}
	c.ws = ws
	if first.GetJoin() == nil {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("%w: first message %v", ErrProtocol, first)
	}
	c.mark(&c.phases.Joined)
	c.sid = first.GetJoin().GetParticipant().GetSid()
	c.updateOthers(first.GetJoin().GetOtherParticipants())
	if err := c.setupPC(); err != nil {
		close(c.stop)
		if c.pc != nil {
			_ = c.pc.Close()
		}
		_ = ws.CloseNow()
		c.wg.Wait()
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.lctx = cancel, lctx
	c.wg.Go(func() { c.readLoop(lctx, ws) })
	if iv := first.GetJoin().GetPingInterval(); iv > 0 {
		c.wg.Go(func() { c.pingLoop(lctx, time.Duration(iv)*time.Second) })
	}
	for _, t := range []struct {
		cid string
		typ livekit.TrackType
	}{{name + "-audio", livekit.TrackType_AUDIO}, {name + "-video", livekit.TrackType_VIDEO}} {
		if err := c.send(ctx, &livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: &livekit.AddTrackRequest{
			Cid: t.cid, Name: t.cid, Type: t.typ, Width: 320, Height: 180}}}); err != nil {
			c.Close()
			return nil, err
		}
	}
	c.negMu.Lock()
	c.offering = true
	c.negMu.Unlock()
	if err := c.offer(ctx, false); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dial opens the signal WebSocket with join request jr (its connection
// settings filled in) and reads the first message.
func (c *Client) dial(ctx context.Context, hc *http.Client, jr *livekit.JoinRequest) (*websocket.Conn, *livekit.SignalResponse, error) {
	jr.ConnectionSettings = &livekit.ConnectionSettings{AutoSubscribe: c.autoSubscribe}
	b, err := proto.Marshal(jr)
	if err != nil {
		return nil, nil, err
	}
	wrapped, err := proto.Marshal(&livekit.WrappedJoinRequest{JoinRequest: b})
	if err != nil {
		return nil, nil, err
	}
	ws, _, err := websocket.Dial(ctx, c.rtcURL+"&join_request="+base64.URLEncoding.EncodeToString(wrapped),
		&websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, nil, fmt.Errorf("websocket: %w", err)
	}
	ws.SetReadLimit(1 << 20)
	_, b, err = ws.Read(ctx)
	var first livekit.SignalResponse
	if err == nil {
		err = proto.Unmarshal(b, &first)
	}
	if err != nil {
		_ = ws.CloseNow()
		return nil, nil, fmt.Errorf("%w: first message: %v", ErrProtocol, err)
	}
	return ws, &first, nil
}

// Resume is livekit-client's resume after its signal connection was
// lost (RTCEngine.resumeConnection): the WebSocket is dropped without a
// leave or close handshake, as a network change drops it, and opened
// again with a join request saying reconnect and naming the participant
// SID; the server must answer with a ReconnectResponse first. The
// PeerConnection stays and offers an ICE restart. A LeaveRequest in
// place of the ReconnectResponse is returned as an error naming its
// action.
func (c *Client) Resume(ctx context.Context, hc *http.Client) error {
	_ = c.conn().CloseNow()
	ws, first, err := c.dial(ctx, hc, &livekit.JoinRequest{Reconnect: true, ParticipantSid: c.sid,
		ReconnectReason: livekit.ReconnectReason_RR_SIGNAL_DISCONNECTED})
	if err != nil {
		return err
	}
	if first.GetReconnect() == nil {
		_ = ws.CloseNow()
		if l := first.GetLeave(); l != nil {
			return fmt.Errorf("%w: resume answered with a leave, action %v", ErrProtocol, l.GetAction())
		}
		return fmt.Errorf("%w: resume answered with %T", ErrProtocol, first.GetMessage())
	}
	c.wsMu.Lock()
	c.ws = ws
	c.wsMu.Unlock()
	c.wg.Go(func() { c.readLoop(c.lctx, ws) })
	c.negMu.Lock()
	busy := c.offering
	c.offering = true
	c.negMu.Unlock()
	if busy {
		return fmt.Errorf("%w: an offer was unanswered when the connection dropped", ErrProtocol)
	}
	return c.offer(ctx, true)
}

// Answers is how many answers the client applied.
func (c *Client) Answers() int64 { return c.answers.Load() }

func (c *Client) conn() *websocket.Conn {
	c.wsMu.Lock()
	defer c.wsMu.Unlock()
	return c.ws
}

func (c *Client) mark(t *time.Time) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.IsZero() {
		*t = now
	}
}

func (c *Client) errorf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.errs) < 10 {
		c.errs = append(c.errs, fmt.Errorf(format, args...))
	}
}

func (c *Client) setupPC() error {
	api, err := rtcclient.NewAPI(nil, false)
	if err != nil {
		return err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	c.pc = pc
	pc.OnTrack(c.onTrack)
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus,
		ClockRate: 48000, Channels: 2}, c.name+"-audio", c.name+"-stream")
	if err != nil {
		return err
	}
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8,
		ClockRate: 90000}, c.name+"-video", c.name+"-stream")
	if err != nil {
		return err
	}
	for _, tr := range []*webrtc.TrackLocalStaticRTP{audio, video} {
		snd, err := pc.AddTrack(tr)
		if err != nil {
			return err
		}
		c.wg.Go(func() { c.readRTCP(snd) })
	}
	c.wg.Go(func() { c.sendAudio(audio) })
	c.wg.Go(func() { c.sendVideo(video) })
	return nil
}

// offer sends an offer with all candidates (no trickle from the client),
// restarting ICE when iceRestart.
func (c *Client) offer(ctx context.Context, iceRestart bool) error {
	off, err := c.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: iceRestart})
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(off); err != nil {
		return err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.negMu.Lock()
	c.offerID++
	oid := c.offerID
	c.negMu.Unlock()
	return c.send(ctx, &livekit.SignalRequest{Message: &livekit.SignalRequest_Offer{Offer: &livekit.SessionDescription{
		Type: "offer", Sdp: c.pc.LocalDescription().SDP, Id: oid}}})
}

func (c *Client) send(ctx context.Context, req *livekit.SignalRequest) error {
	b, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	return c.conn().Write(ctx, websocket.MessageBinary, b)
}

func (c *Client) readLoop(ctx context.Context, ws *websocket.Conn) {
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return
		}
		var res livekit.SignalResponse
		if err := proto.Unmarshal(b, &res); err != nil {
			c.errorf("%w: %v", ErrProtocol, err)
			return
		}
		switch m := res.Message.(type) {
		case *livekit.SignalResponse_Answer:
			if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.Answer.GetSdp()}); err != nil {
				c.errorf("answer: %v", err)
				continue
			}
			c.mark(&c.phases.Answered)
			c.answers.Add(1)
			c.negMu.Lock()
			again := c.again
			c.again, c.offering = false, again
			c.negMu.Unlock()
			if again {
				c.reoffer(ctx)
			}
		case *livekit.SignalResponse_Trickle:
			var ci webrtc.ICECandidateInit
			if err := json.Unmarshal([]byte(m.Trickle.GetCandidateInit()), &ci); err == nil {
				_ = c.pc.AddICECandidate(ci)
			}
		case *livekit.SignalResponse_MediaSectionsRequirement:
			for range m.MediaSectionsRequirement.GetNumAudios() {
				_, _ = c.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
			}
			for range m.MediaSectionsRequirement.GetNumVideos() {
				_, _ = c.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
			}
			c.negMu.Lock()
			busy := c.offering
			if busy {
				c.again = true
			} else {
				c.offering = true
			}
			c.negMu.Unlock()
			if !busy {
				c.reoffer(ctx)
			}
		case *livekit.SignalResponse_Update:
			c.updateOthers(m.Update.GetParticipants())
		case *livekit.SignalResponse_ConnectionQuality:
			c.mu.Lock()
			for _, u := range m.ConnectionQuality.GetUpdates() {
				c.quality[u.GetParticipantSid()] = u.GetQuality()
			}
			c.mu.Unlock()
		case *livekit.SignalResponse_Leave:
			c.errorf("server sent leave: %v", m.Leave.GetReason())
			return
		}
	}
}

func (c *Client) reoffer(ctx context.Context) {
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.offer(octx, false); err != nil && ctx.Err() == nil {
		c.errorf("offer: %v", err)
	}
}

func (c *Client) pingLoop(ctx context.Context, every time.Duration) {
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			_ = c.send(ctx, &livekit.SignalRequest{Message: &livekit.SignalRequest_Ping{Ping: time.Now().UnixMilli()}})
		}
	}
}

func (c *Client) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	if tr.Kind() != webrtc.RTPCodecTypeVideo {
		c.wg.Go(func() {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
			}
		})
		return
	}
	// The stream ID is the publisher's participant SID ("PA_…|TR_…"
	// layout in LiveKit; the part before "|").
	from, _, _ := strings.Cut(tr.StreamID(), "|")
	c.wg.Go(func() {
		keyed := false
		var lastPLI time.Time
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			key := rtcclient.VP8KeyframeStart(pkt.Payload)
			if !keyed && !key && time.Since(lastPLI) >= keyframeRetry {
				// Video that cannot be decoded yet: ask for a key frame,
				// as a browser's receiver does (RFC 4585 section
				// 6.3.1). It happens when the first packets came before
				// the answer that declares their SSRC was applied: pion
				// drops those (no rid to probe them by).
				lastPLI = time.Now()
				_ = c.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}})
			}
			c.mu.Lock()
			v := c.recv[from]
			if v == nil {
				v = &VideoFrom{}
				c.recv[from] = v
			}
			v.Packets++
			if key {
				v.Keyframes++
			} else if !keyed {
				v.BeforeKeyframe++
			}
			if !keyed {
				if key {
					keyed = true
					if c.phases.FirstVideo.IsZero() {
						c.phases.FirstVideo = time.Now()
					}
				} else if c.phases.FirstVideo.IsZero() {
					c.phases.VideoBeforeKeyframe++
				}
			}
			c.mu.Unlock()
		}
	})
}

// keyframeRetry is how often a receiver waiting for a key frame asks
// again.
const keyframeRetry = 300 * time.Millisecond

// readRTCP drains a sender's RTCP and, like a browser's encoder, honours
// a PLI unless one was honoured within MinKeyframeRequestInterval.
func (c *Client) readRTCP(snd *webrtc.RTPSender) {
	for {
		pkts, _, err := snd.ReadRTCP()
		if err != nil {
			return
		}
		for _, pk := range pkts {
			if _, ok := pk.(*rtcp.PictureLossIndication); ok {
				now := time.Now().UnixNano()
				if last := c.lastKeyReq.Load(); last == 0 || now-last >= int64(rtcclient.MinKeyframeRequestInterval) {
					c.lastKeyReq.Store(now)
					c.keyReq.Store(true)
				}
			}
		}
	}
}

func (c *Client) sendAudio(tr *webrtc.TrackLocalStaticRTP) {
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: make([]byte, 60)}
	for i := 0; ; i++ {
		select {
		case <-c.stop:
			return
		case <-tk.C:
		}
		pkt.SequenceNumber, pkt.Timestamp = uint16(i), uint32(i*960)
		if !c.drop(int64(i)) {
			_ = tr.WriteRTP(pkt)
		}
	}
}

// sendVideo sends 30 frames/s of synthetic VP8, a key frame first and
// then on the PLIs it honours (as browsers: no periodic key frames).
func (c *Client) sendVideo(tr *webrtc.TrackLocalStaticRTP) {
	tk := time.NewTicker(33 * time.Millisecond)
	defer tk.Stop()
	var seq uint16
	for frame := 0; ; frame++ {
		select {
		case <-c.stop:
			return
		case <-tk.C:
		}
		key := frame == 0 || c.keyReq.Swap(false)
		for k, pl := range rtcclient.VP8Frame(frame, key) {
			if !c.drop(int64(seq)) {
				_ = tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq,
					Timestamp: uint32(frame * 3000), Marker: k == 1}, Payload: pl})
			}
			seq++
		}
	}
}

// SetSendLoss makes the client lose every n-th audio and video packet it
// would send (by sequence number, so a lost packet is a gap the SFU
// sees and cannot have resent); n <= 1 loses none.
func (c *Client) SetSendLoss(n int) { c.dropEvery.Store(int64(n)) }

func (c *Client) drop(seq int64) bool {
	n := c.dropEvery.Load()
	return n > 1 && seq%n == 0
}

// Quality returns the last connection quality the server reported of
// the participant with SID sid.
func (c *Client) Quality(sid string) (livekit.ConnectionQuality, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q, ok := c.quality[sid]
	return q, ok
}

// Phases returns the times reached so far.
func (c *Client) Phases() Phases {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.phases
}

// VideoPackets is how many remote video packets arrived.
func (c *Client) VideoPackets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.recv {
		n += v.Packets
	}
	return n
}

// updateOthers records participant infos, skipping stale versions of
// the same participant as livekit-client does.
func (c *Client) updateOthers(infos []*livekit.ParticipantInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, pi := range infos {
		if pi.GetSid() == c.sid {
			continue
		}
		if old := c.others[pi.GetIdentity()]; old != nil && old.GetSid() == pi.GetSid() && old.GetVersion() > pi.GetVersion() {
			continue
		}
		c.others[pi.GetIdentity()] = pi
	}
}

// Participant returns the last info the server gave of the remote
// participant with identity (its state says whether it is still there).
func (c *Client) Participant(identity string) (*livekit.ParticipantInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pi, ok := c.others[identity]
	return pi, ok
}

// SID is the participant SID the server gave this client.
func (c *Client) SID() string { return c.sid }

// Video returns what arrived so far of the video of the participant
// with SID sid.
func (c *Client) Video(sid string) VideoFrom {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.recv[sid]; v != nil {
		return *v
	}
	return VideoFrom{}
}

// Errs returns what went wrong in the background.
func (c *Client) Errs() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.errs...)
}

// Close leaves (LeaveRequest), closes the socket and the PeerConnection
// and waits for the client's goroutines.
func (c *Client) Close() { c.close(true) }

// Abort drops the connection the way a page that gives up on a connect
// attempt does (Element Call aborts its first LiveKit connection when
// it reconnects): no LeaveRequest, the WebSocket torn down without a
// close handshake, the PeerConnection closed.
func (c *Client) Abort() { c.close(false) }

func (c *Client) close(leave bool) {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	if leave {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = c.send(ctx, &livekit.SignalRequest{Message: &livekit.SignalRequest_Leave{Leave: &livekit.LeaveRequest{
			Reason: livekit.DisconnectReason_CLIENT_INITIATED}}})
		cancel()
		_ = c.conn().Close(websocket.StatusNormalClosure, "bye")
	} else {
		_ = c.conn().CloseNow()
	}
	if c.cancel != nil {
		c.cancel()
	}
	_ = c.pc.Close()
	c.wg.Wait()
}
