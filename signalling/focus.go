package signalling

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-chat/switchboard/homeserver"
	"github.com/switchboard-chat/switchboard/sfu"
)

// Focus is the SFU focus of MSC3401/MSC3898 group calls: a service device
// of the homeserver that answers to-device m.call.invite from call
// members, joins them to the SFU conference of their room's call, and
// then speaks MSC3898's data-channel messages with them.
//
// Lock order: Focus.mu before call.mu; no focus lock is held while the
// SFU or the homeserver is called.
type Focus struct {
	cfg       FocusConfig
	hs        Homeserver
	sfu       *sfu.SFU
	log       *slog.Logger
	m         *metrics
	userID    string
	sessionID string
	partyID   string
	inbox     <-chan homeserver.ToDeviceMessage
	stopInbox func()
	done      chan struct{}

	// wg tracks goroutines that end calls.
	wg sync.WaitGroup

	// mu guards the fields below.
	mu       sync.Mutex
	calls    map[string]*call // by participant ID
	limiters map[string]*rate.Limiter
	closed   bool
	runDone  chan struct{} // closed when Run returns; nil if Run never ran
}

// NewFocus validates cfg, creates the focus's service user and device on
// the homeserver if needed, and starts receiving its to-device messages
// (they queue until Run reads them).
func NewFocus(cfg FocusConfig) (*Focus, error) {
	if err := cfg.validateAndDefault(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.SendTimeout)
	defer cancel()
	userID, err := cfg.Homeserver.EnsureServiceUser(ctx, cfg.Localpart, cfg.DeviceID, cfg.DisplayName)
	if err != nil {
		return nil, fmt.Errorf("signalling: focus account: %w", err)
	}
	inbox, stop, err := cfg.Homeserver.ListenToDevice(userID, cfg.DeviceID, cfg.InboxSize)
	if err != nil {
		return nil, fmt.Errorf("signalling: focus inbox: %w", err)
	}
	f := &Focus{
		cfg: cfg, hs: cfg.Homeserver, sfu: cfg.SFU, m: m, userID: userID,
		log:       cfg.Logger.With("component", "focus"),
		sessionID: randomID(), partyID: randomID(),
		inbox: inbox, stopInbox: stop, done: make(chan struct{}),
		calls: make(map[string]*call), limiters: make(map[string]*rate.Limiter),
	}
	return f, nil
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// UserID and DeviceID address the focus: clients send it to-device
// messages and name it in m.call / m.call.member foci lists.
func (f *Focus) UserID() string { return f.userID }

// DeviceID returns the focus's device ID.
func (f *Focus) DeviceID() string { return f.cfg.DeviceID }

// Run handles to-device messages to the focus and checks on its
// participants (membership, expiry, pings) until ctx ends or the focus is
// closed. It returns nil when ctx ends, ErrClosed when the focus closed.
func (f *Focus) Run(ctx context.Context) error {
	f.mu.Lock()
	if f.closed || f.runDone != nil {
		f.mu.Unlock()
		return ErrClosed
	}
	runDone := make(chan struct{})
	f.runDone = runDone
	f.mu.Unlock()
	defer close(runDone)

	tick := min(f.cfg.CheckInterval, f.cfg.PingInterval)
	t := time.NewTicker(tick)
	defer t.Stop()
	lastCheck := f.cfg.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.done:
			return ErrClosed
		case msg := <-f.inbox:
			f.handle(ctx, msg)
		case <-t.C:
			now := f.cfg.Now()
			if now.Sub(lastCheck) >= f.cfg.CheckInterval-tick/2 {
				lastCheck = now
				f.checkMembers(ctx)
			}
			f.pingAll(now)
			f.pruneLimiters(now)
		}
	}
}

// Close ends every call (each client gets m.call.hangup), stops the
// inbox and waits for what the focus started. It does not close the SFU.
func (f *Focus) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	runDone := f.runDone
	f.mu.Unlock()
	close(f.done)
	f.stopInbox()
	if runDone != nil {
		<-runDone
	}
	f.mu.Lock()
	calls := make([]*call, 0, len(f.calls))
	for _, c := range f.calls {
		calls = append(calls, c)
	}
	f.mu.Unlock()
	for _, c := range calls {
		c.setHangupReason(ReasonUserHangup)
		c.closeParticipant()
	}
	f.wg.Wait()
	return nil
}

// goTracked runs fn on a goroutine Close waits for, unless the focus is
// closed (Close then ends calls itself).
func (f *Focus) goTracked(fn func()) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		fn()
	}()
	return true
}

func participantID(userID, deviceID string) string { return userID + "/" + deviceID }

// Peer names the user and device of the focus's participant pid, for
// the LiveKit adapter sharing its conferences (livekit.PeerDirectory).
func (f *Focus) Peer(pid string) (userID, deviceID string, ok bool) {
	if c := f.lookup(pid); c != nil {
		return c.userID, c.deviceID, true
	}
	return "", "", false
}

// peer names the user and device of any participant of a conference:
// the focus's own, or another protocol's through cfg.Peers.
func (f *Focus) peer(pid string) (userID, deviceID string, ok bool) {
	if c := f.lookup(pid); c != nil {
		return c.userID, c.deviceID, true
	}
	if f.cfg.Peers != nil {
		return f.cfg.Peers.Peer(pid)
	}
	return "", "", false
}

func (f *Focus) lookup(pid string) *call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[pid]
}

// removeCall forgets c if it is still the call of its device.
func (f *Focus) removeCall(c *call) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls[c.pid] == c {
		delete(f.calls, c.pid)
	}
}

// conferenceCalls returns the calls in the same conference as c, c
// excluded.
func (f *Focus) conferenceCalls(c *call) []*call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*call
	for _, o := range f.calls {
		if o != c && o.conf == c.conf {
			out = append(out, o)
		}
	}
	return out
}

// Calls returns the number of participants the focus has in calls.
func (f *Focus) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// allowInvite applies the per-user invite rate limit.
func (f *Focus) allowInvite(userID string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.limiters[userID]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(f.cfg.InviteRate), f.cfg.InviteBurst)
		f.limiters[userID] = l
	}
	return l.AllowN(now, 1)
}

// pruneLimiters drops the buckets that have refilled: their users have
// been quiet long enough that a fresh bucket is the same.
func (f *Focus) pruneLimiters(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for u, l := range f.limiters {
		if l.TokensAt(now) >= float64(f.cfg.InviteBurst) {
			delete(f.limiters, u)
		}
	}
}

// typeLabel bounds the metric label values to the types the focus knows.
func typeLabel(t string) string {
	switch t {
	case TypeInvite, TypeAnswer, TypeCandidates, TypeNegotiate, TypeHangup, TypeReject, TypeSelectAnswer,
		TypeMetadataChanged, TypeTrackSubscription, TypePing, TypePong:
		return t
	}
	return "other"
}

// handle dispatches one to-device message to the focus.
func (f *Focus) handle(ctx context.Context, msg homeserver.ToDeviceMessage) {
	f.m.messages.WithLabelValues("to_device", typeLabel(msg.Type)).Inc()
	switch msg.Type {
	case TypeInvite:
		f.handleInvite(ctx, msg)
		return
	case TypeCandidates, TypeNegotiate, TypeHangup, TypeReject, TypeMetadataChanged, TypeSelectAnswer:
	default:
		f.m.dropped.WithLabelValues("unknown_type").Inc()
		f.log.Debug("ignoring to-device message", "type", msg.Type, "sender", msg.Sender)
		return
	}
	h, err := parseHeader(msg.Content, f.cfg.MaxContentBytes)
	if err != nil {
		f.m.dropped.WithLabelValues("malformed").Inc()
		f.log.Info("malformed to-device call event", "type", msg.Type, "sender", msg.Sender, "err", err)
		return
	}
	c := f.lookup(participantID(msg.Sender, h.DeviceID))
	if c == nil || c.callID != h.CallID {
		f.m.dropped.WithLabelValues("unknown_call").Inc()
		f.log.Debug("to-device call event for no current call", "type", msg.Type, "sender", msg.Sender, "call_id", h.CallID)
		return
	}
	c.handleToDevice(ctx, msg.Type, msg.Content)
}

// handleInvite answers an m.call.invite: rate limit, parse, check the
// sender's room and call membership, join the SFU, answer.
func (f *Focus) handleInvite(ctx context.Context, msg homeserver.ToDeviceMessage) {
	now := f.cfg.Now()
	// The homeserver bounds request bodies, so an oversized invite is
	// still parsed this far, to address its hangup.
	hdr := replyHeader(msg.Content, 16*f.cfg.MaxContentBytes)
	reject := func(reason string, err error) {
		f.m.invites.WithLabelValues(reason).Inc()
		f.log.Info("invite refused", "sender", msg.Sender, "reason", reason, "err", err)
		if hdr == nil {
			return // nowhere to send a hangup
		}
		f.sendHangup(msg.Sender, hdr, "", reason)
	}
	if !f.allowInvite(msg.Sender, now) {
		reject(ReasonBusy, ErrRateLimited)
		return
	}
	inv, err := parseInvite(msg.Content, f.cfg.MaxContentBytes)
	if err != nil {
		reject(ReasonInvalid, err)
		return
	}
	pid := participantID(msg.Sender, inv.DeviceID)
	f.mu.Lock()
	n := 0
	for _, c := range f.calls {
		if c.userID == msg.Sender && c.pid != pid {
			n++
		}
	}
	f.mu.Unlock()
	if n >= f.cfg.MaxCallsPerUser {
		reject(ReasonBusy, fmt.Errorf("%d calls already", n))
		return
	}
	actx, cancel := context.WithTimeout(ctx, f.cfg.JoinTimeout)
	defer cancel()
	if err := f.authorize(actx, inv.RoomID, inv.ConfID, msg.Sender, inv.DeviceID, inv.SenderSessionID); err != nil {
		if errors.Is(err, ErrNotAllowed) {
			reject(ReasonNotJoined, err)
		} else {
			f.log.Warn("checking call membership", "err", err)
			reject(ReasonInvalid, err)
		}
		return
	}
	// One session per device (MSC3401): a new invite from a device ends
	// the call it had.
	if old := f.lookup(pid); old != nil {
		f.log.Info("device called again, ending its previous call", "participant", pid)
		old.closeParticipant()
	}
	c := newCall(f, msg.Sender, inv)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.calls[pid] = c
	f.mu.Unlock()
	p, answer, err := f.sfu.Join(actx, c.conf, pid, inv.Offer.SDP, c.handler())
	if err != nil {
		f.removeCall(c)
		c.finish()
		reason := ReasonInvalid
		if errors.Is(err, sfu.ErrConferenceFull) || errors.Is(err, sfu.ErrTooManyConferences) || errors.Is(err, sfu.ErrClosed) {
			reason = ReasonBusy
		}
		reject(reason, err)
		return
	}
	f.m.invites.WithLabelValues("accepted").Inc()
	c.start(p, answer) // counts the call in switchboard_focus_calls
	f.log.Info("participant joined", "participant", pid, "room", inv.RoomID, "conf_id", inv.ConfID)
}

// sendHangup sends m.call.hangup for a call the focus refused or ended.
func (f *Focus) sendHangup(userID string, h *callHeader, roomID, reason string) {
	content := map[string]any{
		"version": "1", "call_id": h.CallID, "party_id": f.partyID, "conf_id": h.ConfID,
		"device_id": f.cfg.DeviceID, "sender_session_id": f.sessionID, "dest_session_id": h.SenderSessionID,
		"seq": 0, "reason": reason,
	}
	if roomID != "" {
		content["room_id"] = roomID
	}
	f.sendToDevice(userID, h.DeviceID, TypeHangup, content)
}

// sendToDevice sends one to-device message from the focus.
func (f *Focus) sendToDevice(userID, deviceID, typ string, content any) {
	b, err := json.Marshal(content)
	if err != nil {
		f.log.Error("encoding to-device message", "type", typ, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.SendTimeout)
	defer cancel()
	if err := f.hs.SendToDevice(ctx, []homeserver.ToDeviceMessage{{Sender: f.userID, Type: typ, Content: b,
		TargetUser: userID, TargetDevice: deviceID}}); err != nil {
		f.log.Warn("sending to-device message", "type", typ, "user_id", userID, "err", err)
	}
}

// checkMembers ends the calls of participants who left the room or whose
// call membership expired, was removed or changed session.
func (f *Focus) checkMembers(ctx context.Context) {
	f.mu.Lock()
	calls := make([]*call, 0, len(f.calls))
	for _, c := range f.calls {
		calls = append(calls, c)
	}
	f.mu.Unlock()
	for _, c := range calls {
		if !c.isStarted() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, f.cfg.SendTimeout)
		err := f.authorize(cctx, c.roomID, c.confID, c.userID, c.deviceID, c.clientSession)
		cancel()
		if errors.Is(err, ErrNotAllowed) {
			f.log.Info("participant no longer in the call", "participant", c.pid, "err", err)
			c.end(ReasonNotJoined)
		} else if err != nil {
			f.log.Warn("checking call membership", "participant", c.pid, "err", err)
		}
	}
}

// pingAll sends m.call.ping to the participants due one and removes those
// whose data channel went quiet.
func (f *Focus) pingAll(now time.Time) {
	f.mu.Lock()
	calls := make([]*call, 0, len(f.calls))
	for _, c := range f.calls {
		calls = append(calls, c)
	}
	f.mu.Unlock()
	for _, c := range calls {
		c.ping(now)
	}
}
