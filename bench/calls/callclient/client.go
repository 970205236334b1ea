// Package callclient is a group-call participant for tests and load tools:
// a mautrix client that joins a room and publishes its MSC3401 call
// membership, and a pion/webrtc client that joins the SFU focus with a
// to-device m.call.invite and then speaks MSC3898's data-channel messages
// (signalling/README.md is the protocol). Its WebRTC side is the test
// kit's internal/testkit/rtcclient. It sends synthetic Opus and VP8,
// subscribes to the tracks it is told to, counts what it receives and
// records when each phase of call setup happened.
//
// It talks to loopback servers only: ICE is restricted to loopback
// addresses.
package callclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Errors of the package.
var (
	// ErrRefused means the focus hung up (refused the invite or ended
	// the call); the error text carries its reason.
	ErrRefused = errors.New("callclient: focus hung up")
	// ErrClosed means the participant was closed.
	ErrClosed = errors.New("callclient: closed")
)

// Event types (signalling/README.md).
const (
	typeInvite       = "m.call.invite"
	typeAnswer       = "m.call.answer"
	typeCandidates   = "m.call.candidates"
	typeNegotiate    = "m.call.negotiate"
	typeHangup       = "m.call.hangup"
	typeMetadata     = "m.call.sdp_stream_metadata_changed"
	typeSubscription = "m.call.track_subscription"
	typePing         = "m.call.ping"
	typePong         = "m.call.pong"
	typeSpeakers     = "chat.switchboard.call.speakers"

	// TypeCall and TypeCallMember are the unstable MSC3401 state types
	// (what Element sends); the focus reads them first.
	TypeCall       = "org.matrix.msc3401.call"
	TypeCallMember = "org.matrix.msc3401.call.member"
)

// Focus addresses the SFU focus.
type Focus struct {
	UserID   string
	DeviceID string
}

// Register creates localpart on the server at baseURL (open registration)
// and returns a client logged in as it. hc may be nil.
func Register(ctx context.Context, baseURL, localpart, password string, hc *http.Client) (*mautrix.Client, error) {
	cli, err := mautrix.NewClient(baseURL, "", "")
	if err != nil {
		return nil, err
	}
	if hc != nil {
		cli.Client = hc
	}
	resp, err := cli.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: localpart, Password: password})
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", localpart, err)
	}
	cli.SetCredentials(resp.UserID, resp.AccessToken)
	cli.DeviceID = resp.DeviceID
	return cli, nil
}

// CreateCallRoom creates a public room whose members may publish call
// memberships, with the MSC3401 call confID in it naming focus in m.foci.
func CreateCallRoom(ctx context.Context, cli *mautrix.Client, confID string, focus Focus) (id.RoomID, error) {
	resp, err := cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "public_chat",
		PowerLevelOverride: &event.PowerLevelsEventContent{
			Users:  map[id.UserID]int{cli.UserID: 100},
			Events: map[string]int{TypeCallMember: 0, "m.call.member": 0, TypeCall: 50},
		},
	})
	if err != nil {
		return "", fmt.Errorf("create room: %w", err)
	}
	_, err = cli.SendStateEvent(ctx, resp.RoomID, event.Type{Type: TypeCall, Class: event.StateEventType}, confID,
		map[string]any{"m.intent": "m.room", "m.type": "m.video", "m.name": "call " + confID,
			"m.foci": []any{map[string]any{"user_id": focus.UserID, "device_id": focus.DeviceID}}})
	if err != nil {
		return "", fmt.Errorf("m.call: %w", err)
	}
	return resp.RoomID, nil
}

// Options say what a participant does.
type Options struct {
	// Name prefixes the participant's stream and track IDs:
	// <Name>-stream, <Name>-audio, <Name>-video. Default: the localpart.
	Name string
	// Publish sends 50 packets/s of Opus and 30 frames/s of VP8 (two
	// packets each, a key frame every half second and after each PLI,
	// except that, like libwebrtc, it ignores a PLI that arrives within
	// 300 ms of the last one it acted on).
	Publish bool
	// SubscribeTo says whose tracks to subscribe to (by user ID) when the
	// focus's stream metadata lists them. Nil subscribes to nobody.
	SubscribeTo func(userID string) bool
	// AudioLevel is the RFC 6464 level sent (0 loudest, 127 silence).
	// Default 127.
	AudioLevel uint8
	// KeyframeInterval is how often the published video has a key frame
	// besides those a PLI asks for. Default 500ms; negative: only on PLI,
	// as browsers do.
	KeyframeInterval time.Duration
	// SyncTimeout is the /sync long-poll timeout. Default 30s.
	SyncTimeout time.Duration
}

// Phases are the times at which call setup reached each stage; zero when
// it has not.
type Phases struct {
	InviteSent    time.Time // the to-device PUT started
	Answered      time.Time // m.call.answer arrived (by /sync)
	ICEConnected  time.Time
	DTLSConnected time.Time
	FirstRTP      time.Time // first RTP packet on any received track
	FirstVideo    time.Time // first packet of a VP8 key frame on a received video track: the first decodable frame
	// VideoBeforeKeyframe counts video packets received before the first
	// key frame: frames the subscriber cannot decode (the SFU should start
	// a subscriber's video at a key frame, so 0).
	VideoBeforeKeyframe int
}

// Stream is one stream of the focus's sdp_stream_metadata.
type Stream struct {
	UserID     string           `json:"user_id"`
	DeviceID   string           `json:"device_id"`
	Purpose    string           `json:"purpose"`
	AudioMuted bool             `json:"audio_muted"`
	VideoMuted bool             `json:"video_muted"`
	Tracks     map[string]Track `json:"tracks"`
}

// Track is one track of a Stream.
type Track struct {
	Kind   string   `json:"kind"`
	Layers []string `json:"layers,omitempty"`
}

// Speakers is the focus's chat.switchboard.call.speakers content.
type Speakers struct {
	Active   []SpeakerRef `json:"active"`
	Dominant *SpeakerRef  `json:"dominant"`
}

// SpeakerRef names a speaking device.
type SpeakerRef struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
}

// Participant is one device in a group call.
type Participant struct {
	cli     *mautrix.Client
	room    id.RoomID
	conf    string
	focus   Focus
	opts    Options
	callID  string
	session string
	seq     atomic.Int64
	media   *media

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	since  string

	answered chan struct{}
	ansOnce  sync.Once
	hungUp   chan struct{}
	hupOnce  sync.Once

	// mu guards the fields below.
	mu           sync.Mutex
	phases       Phases
	focusSession string
	hangupReason string
	meta         map[string]Stream
	subscribed   map[string]bool
	speakers     Speakers
	dcCounts     map[string]int // data-channel messages received by type
	errs         []error
	leaving      bool
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Join joins room (if not joined), publishes a call membership for the
// client's device in conference conf using focus, prepares the
// PeerConnection and starts listening on /sync. Call Invite to join the
// call.
func Join(ctx context.Context, cli *mautrix.Client, room id.RoomID, conf string, focus Focus, o Options) (*Participant, error) {
	if o.Name == "" {
		o.Name = cli.UserID.Localpart()
	}
	if o.AudioLevel == 0 {
		o.AudioLevel = 127
	}
	if o.KeyframeInterval == 0 {
		o.KeyframeInterval = 500 * time.Millisecond
	}
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = 30 * time.Second
	}
	if _, err := cli.JoinRoomByID(ctx, room); err != nil {
		return nil, fmt.Errorf("join %s: %w", room, err)
	}
	pctx, cancel := context.WithCancel(context.Background())
	p := &Participant{cli: cli, room: room, conf: conf, focus: focus, opts: o,
		callID: "call-" + randomID(), session: "sess-" + randomID(), ctx: pctx, cancel: cancel,
		answered: make(chan struct{}), hungUp: make(chan struct{}),
		meta: map[string]Stream{}, subscribed: map[string]bool{}, dcCounts: map[string]int{}}
	if err := p.publishMember(ctx, time.Now().Add(time.Hour)); err != nil {
		cancel()
		return nil, err
	}
	resp, err := cli.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		cancel()
		return nil, fmt.Errorf("initial sync: %w", err)
	}
	p.since = resp.NextBatch
	m, err := newMedia(p)
	if err != nil {
		cancel()
		return nil, err
	}
	p.media = m
	p.wg.Add(1)
	go p.syncLoop()
	return p, nil
}

// UserID and DeviceID name the participant.
func (p *Participant) UserID() string { return string(p.cli.UserID) }

// DeviceID returns the participant's device ID.
func (p *Participant) DeviceID() string { return string(p.cli.DeviceID) }

// StreamID is the ID of the stream the participant publishes.
func (p *Participant) StreamID() string { return p.opts.Name + "-stream" }

// CallID is the call_id of the participant's call with the focus.
func (p *Participant) CallID() string { return p.callID }

// publishMember publishes the MSC3401 call membership with this device.
func (p *Participant) publishMember(ctx context.Context, expires time.Time) error {
	content := map[string]any{"m.calls": []any{map[string]any{
		"m.call_id": p.conf,
		"m.devices": []any{map[string]any{
			"device_id": string(p.cli.DeviceID), "session_id": p.session, "expires_ts": expires.UnixMilli(),
			"feeds":         []any{map[string]any{"purpose": "m.usermedia", "id": p.StreamID()}},
			"m.foci.active": []any{map[string]any{"user_id": p.focus.UserID, "device_id": p.focus.DeviceID}},
		}},
	}}}
	_, err := p.cli.SendStateEvent(ctx, p.room, event.Type{Type: TypeCallMember, Class: event.StateEventType},
		string(p.cli.UserID), content)
	if err != nil {
		return fmt.Errorf("m.call.member: %w", err)
	}
	return nil
}

// RemoveMember empties the participant's call membership (leaving the
// call as MSC3401 describes).
func (p *Participant) RemoveMember(ctx context.Context) error {
	_, err := p.cli.SendStateEvent(ctx, p.room, event.Type{Type: TypeCallMember, Class: event.StateEventType},
		string(p.cli.UserID), map[string]any{"m.calls": []any{}})
	return err
}

// Invite creates the offer (data channel, and audio and video when
// publishing) with all candidates in it and sends m.call.invite to the
// focus.
func (p *Participant) Invite(ctx context.Context) error {
	sdp, err := p.media.offer()
	if err != nil {
		return err
	}
	content := map[string]any{
		"version": "1", "call_id": p.callID, "party_id": string(p.cli.DeviceID), "conf_id": p.conf,
		"room_id": string(p.room), "device_id": string(p.cli.DeviceID), "sender_session_id": p.session,
		"dest_session_id": "", "seq": p.seq.Add(1) - 1, "lifetime": 30000,
		"offer": map[string]any{"type": "offer", "sdp": sdp},
	}
	if p.opts.Publish {
		content["sdp_stream_metadata"] = map[string]any{p.StreamID(): map[string]any{
			"purpose": "m.usermedia", "audio_muted": false, "video_muted": false}}
	}
	p.mu.Lock()
	p.phases.InviteSent = time.Now()
	p.mu.Unlock()
	return p.send(ctx, typeInvite, content)
}

// send sends a to-device message to the focus.
func (p *Participant) send(ctx context.Context, typ string, content map[string]any) error {
	_, err := p.cli.SendToDevice(ctx, event.Type{Type: typ, Class: event.ToDeviceEventType},
		&mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
			id.UserID(p.focus.UserID): {id.DeviceID(p.focus.DeviceID): {Raw: content}},
		}})
	if err != nil {
		return fmt.Errorf("send %s: %w", typ, err)
	}
	return nil
}

// callFields are the header fields of to-device call events after the
// invite.
func (p *Participant) callFields() map[string]any {
	p.mu.Lock()
	fs := p.focusSession
	p.mu.Unlock()
	return map[string]any{"version": "1", "call_id": p.callID, "party_id": string(p.cli.DeviceID), "conf_id": p.conf,
		"device_id": string(p.cli.DeviceID), "sender_session_id": p.session, "dest_session_id": fs,
		"seq": p.seq.Add(1) - 1}
}

// Hangup sends m.call.hangup to the focus (to-device).
func (p *Participant) Hangup(ctx context.Context) error {
	p.mu.Lock()
	p.leaving = true
	p.mu.Unlock()
	c := p.callFields()
	c["reason"] = "user_hangup"
	return p.send(ctx, typeHangup, c)
}

// HangupDC sends m.call.hangup on the data channel.
func (p *Participant) HangupDC() error {
	p.mu.Lock()
	p.leaving = true
	p.mu.Unlock()
	return p.media.sendDC(typeHangup, struct{}{})
}

// WaitAnswered waits for m.call.answer; ErrRefused if the focus hung up.
func (p *Participant) WaitAnswered(ctx context.Context) error {
	select {
	case <-p.answered:
		return nil
	case <-p.hungUp:
		return fmt.Errorf("%w: %s", ErrRefused, p.HangupReason())
	case <-ctx.Done():
		return ctx.Err()
	case <-p.ctx.Done():
		return ErrClosed
	}
}

// HungUp is closed when the focus sends m.call.hangup for this call.
func (p *Participant) HungUp() <-chan struct{} { return p.hungUp }

// HangupReason is the reason of the focus's hangup ("" if none).
func (p *Participant) HangupReason() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hangupReason
}

// Phases returns when each phase of call setup happened so far.
func (p *Participant) Phases() Phases {
	p.mu.Lock()
	ph := p.phases
	p.mu.Unlock()
	p.media.phases(&ph)
	return ph
}

// Received returns the packets received so far on the audio and video
// tracks of stream streamID.
func (p *Participant) Received(streamID string) (audio, video int64) {
	return p.media.rtc.Received(streamID)
}

// Metadata returns the focus's latest stream metadata.
func (p *Participant) Metadata() map[string]Stream {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]Stream, len(p.meta))
	for k, v := range p.meta {
		out[k] = v
	}
	return out
}

// Speakers returns the focus's latest speakers message.
func (p *Participant) Speakers() Speakers {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.speakers
}

// DataMessages returns how many data-channel messages of type typ came
// from the focus.
func (p *Participant) DataMessages(typ string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dcCounts[typ]
}

// OfferedTrack reports whether the focus's current description sends
// trackID to this participant.
func (p *Participant) OfferedTrack(trackID string) bool { return p.media.offeredTrack(trackID) }

// Errs returns the errors met in callbacks (bad messages from the focus,
// failed negotiations) so far.
func (p *Participant) Errs() []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]error(nil), p.errs...)
}

func (p *Participant) errorf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leaving || p.hangupReason != "" || p.ctx.Err() != nil {
		return // the focus may close the connection any time now
	}
	p.errs = append(p.errs, fmt.Errorf(format, args...))
}

// StopPongs makes the participant ignore the focus's pings from now on
// (a dead peer, as far as the focus can tell).
func (p *Participant) StopPongs() { p.media.noPong.Store(true) }

// Close stops the participant: its PeerConnection, media and /sync loop.
// It sends nothing; call Hangup first to leave cleanly.
func (p *Participant) Close() {
	p.once.Do(func() {
		p.mu.Lock()
		p.leaving = true
		p.mu.Unlock()
		p.cancel()
		p.media.close()
		p.wg.Wait()
	})
}
