package homeserver

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Delegated delayed leave (MSC4195, "Optional delegated delayed leave
// events"): a client that scheduled its leave as a delayed event (MSC4140)
// hands it to the homeserver, which restarts it for as long as the
// client's participant is connected to this server's SFU and sends it as
// soon as the participant is gone. The SFU side (the LiveKit adapter in
// signalling/) tells the homeserver who connects and disconnects through
// RTCParticipantConnected and RTCParticipantDisconnected; the homeserver
// never imports the SFU.

const (
	delegatePath = "/_matrix/client/unstable/io.element.msc4195/rtc/livekit/delegate_delayed_leave"
	// minDelegatedDelay is the shortest delay a delegated event may have:
	// the MSC recommends an hour and lets servers refuse shorter ones; a
	// minute keeps restarts (at half the delay) well apart from the tick.
	minDelegatedDelay = time.Minute
	// delegateTick is how often delegations are checked.
	delegateTick = 5 * time.Second
	// delegateConnectWait is how long a delegation waits for its
	// participant to show up on the SFU. Past it, the server stops
	// restarting the event and lets it run out by itself (the client
	// was told to use a long delay, so a server that never sees the
	// connection ends the membership late rather than early).
	delegateConnectWait = 2 * time.Minute
)

// RTCParticipant names a MatrixRTC member's participant on this server's
// LiveKit SFU. MemberID (MSC4143 member.id) and DeviceID are matched when
// both sides know them; the older /sfu/get flow knows the device only.
type RTCParticipant struct {
	UserID   string
	RoomID   string
	SlotID   string
	MemberID string
	DeviceID string
}

// matches reports whether a connected participant c is the one a
// delegation d waits for.
func (d RTCParticipant) matches(c RTCParticipant) bool {
	if d.UserID != c.UserID || d.RoomID != c.RoomID {
		return false
	}
	if d.MemberID != "" && c.MemberID != "" && d.MemberID != c.MemberID {
		return false
	}
	if d.DeviceID != "" && c.DeviceID != "" && d.DeviceID != c.DeviceID {
		return false
	}
	return d.SlotID == "" || c.SlotID == "" || d.SlotID == c.SlotID
}

// delegation is one delegated delayed leave.
type delegation struct {
	p       RTCParticipant
	delayID string
	// since is when the delegation was made (Unix ms); seen is whether
	// its participant has been seen connected since.
	since int64
	seen  bool
}

// rtcDelegations holds the delegated leaves and the SFU's participants.
// They live in memory: after a restart clients delegate again, and the
// delayed events themselves are in the database and run out by their
// own delay meanwhile.
type rtcDelegations struct {
	s *Server

	mu sync.Mutex // guards byKey and connected
	// byKey: one delegation per user, room, slot and member (MSC4195).
	byKey map[string]*delegation
	// connected lists the participants on the SFU, with a count per
	// identical entry (a reconnect may overlap the old connection).
	connected map[RTCParticipant]int

	wake chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

func newRTCDelegations(s *Server) *rtcDelegations {
	return &rtcDelegations{s: s, byKey: map[string]*delegation{}, connected: map[RTCParticipant]int{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func delegationKey(p RTCParticipant) string {
	return strings.Join([]string{p.UserID, p.RoomID, p.SlotID, p.MemberID, p.DeviceID}, "\x00")
}

func (r *rtcDelegations) start() {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		t := r.s.cfg.Clock.NewTicker(delegateTick)
		defer t.Stop()
		for {
			select {
			case <-r.done:
				return
			case <-t.C():
			case <-r.wake:
			}
			r.check(ctx)
		}
	}()
}

// stop ends the checker and waits for it. Safe to call twice.
func (r *rtcDelegations) stop() {
	select {
	case <-r.done:
	default:
		close(r.done)
	}
	r.wg.Wait()
}

func (r *rtcDelegations) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// RTCParticipantConnected tells the homeserver that a MatrixRTC member's
// participant joined this server's SFU. The LiveKit adapter calls it.
func (s *Server) RTCParticipantConnected(p RTCParticipant) {
	s.rtcDelegates.mu.Lock()
	s.rtcDelegates.connected[p]++
	s.rtcDelegates.markSeenLocked(p)
	s.rtcDelegates.mu.Unlock()
	s.rtcDelegates.poke()
}

// RTCParticipantDisconnected tells the homeserver that a participant left
// the SFU (hung up, lost its connection, was removed). A delegated leave
// waiting for it is sent at once.
func (s *Server) RTCParticipantDisconnected(p RTCParticipant) {
	s.rtcDelegates.mu.Lock()
	// It was connected until now: a delegation waiting for it has seen
	// it, even if no check ran while it was connected.
	s.rtcDelegates.markSeenLocked(p)
	if s.rtcDelegates.connected[p] <= 1 {
		delete(s.rtcDelegates.connected, p)
	} else {
		s.rtcDelegates.connected[p]--
	}
	s.rtcDelegates.mu.Unlock()
	s.rtcDelegates.poke()
}

// markSeenLocked marks the delegations p is the participant of as seen.
// r.mu is held.
func (r *rtcDelegations) markSeenLocked(p RTCParticipant) {
	for _, dl := range r.byKey {
		if dl.p.matches(p) {
			dl.seen = true
		}
	}
}

// DelegateDelayedLeave hands delayID (a delayed event of p.UserID in
// p.RoomID) to the homeserver's care, replacing an earlier delegation for
// the same participant. It is what the delegate_delayed_leave endpoint
// does after authentication, exported for the token service's legacy
// endpoints (lk-jwt-service's /delegate_delayed_leave and the delay_id of
// /sfu/get and /get_token), which authenticate with an OpenID token.
// Errors are *MatrixError values ready for the HTTP edge.
func (s *Server) DelegateDelayedLeave(ctx context.Context, p RTCParticipant, delayID string) error {
	d, err := s.db.DelayedEvent(ctx, delayID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (d.UserID != p.UserID || d.RoomID != p.RoomID)) {
		return errInvalidParam("no such delayed event of yours in this room")
	}
	if err != nil {
		return err
	}
	if d.DelayMS < minDelegatedDelay.Milliseconds() {
		return errInvalidParam("a delegated delayed event needs a delay of at least %d ms", minDelegatedDelay.Milliseconds())
	}
	r := s.rtcDelegates
	r.mu.Lock()
	r.byKey[delegationKey(p)] = &delegation{p: p, delayID: delayID, since: s.nowMS()}
	r.mu.Unlock()
	r.poke()
	return nil
}

// delegateRequest is the body of delegate_delayed_leave: MSC4195 names
// member_id, matrix-js-sdk sends member {id, claimed_device_id}.
type delegateRequest struct {
	URL      *string `json:"url"`
	RoomID   *string `json:"room_id"`
	SlotID   *string `json:"slot_id"`
	MemberID string  `json:"member_id"`
	Member   struct {
		ID              string `json:"id"`
		ClaimedDeviceID string `json:"claimed_device_id"`
	} `json:"member"`
	DelayID *string `json:"delay_id"`
}

// delegateDelayedLeave implements POST
// /_matrix/client/unstable/io.element.msc4195/rtc/livekit/delegate_delayed_leave.
func (s *Server) delegateDelayedLeave(c echo.Context) error {
	d := device(c)
	if err := s.sendLimit.allow(d.UserID); err != nil {
		return err
	}
	var req delegateRequest
	if err := readJSON(c, &req); err != nil {
		return err
	}
	memberID := req.MemberID
	if memberID == "" {
		memberID = req.Member.ID
	}
	if req.URL == nil || req.RoomID == nil || req.SlotID == nil || req.DelayID == nil || memberID == "" {
		return errBadJSON("url, room_id, slot_id, member_id (or member.id) and delay_id are required")
	}
	if !s.ownLiveKitURL(*req.URL) {
		return errInvalidParam("url is not one of this server's SFUs")
	}
	p := RTCParticipant{UserID: d.UserID, RoomID: *req.RoomID, SlotID: *req.SlotID, MemberID: memberID, DeviceID: req.Member.ClaimedDeviceID}
	if err := s.DelegateDelayedLeave(c.Request().Context(), p, *req.DelayID); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

// ownLiveKitURL reports whether u is one of this server's SFUs
// (RTCConfig.LiveKitURLs; any URL when none is configured).
func (s *Server) ownLiveKitURL(u string) bool {
	if len(s.cfg.RTC.LiveKitURLs) == 0 {
		return u != ""
	}
	for _, own := range s.cfg.RTC.LiveKitURLs {
		if strings.TrimSuffix(own, "/") == strings.TrimSuffix(u, "/") {
			return true
		}
	}
	return false
}

// check walks the delegations once: restart the delayed events of
// connected participants at half their delay, send those whose
// participant left, and drop those that are over.
func (r *rtcDelegations) check(ctx context.Context) {
	s := r.s
	now := s.nowMS()
	type action struct {
		key        string
		dl         *delegation
		live, seen bool
	}
	r.mu.Lock()
	acts := make([]action, 0, len(r.byKey))
	for k, dl := range r.byKey {
		live := false
		for c := range r.connected {
			if dl.p.matches(c) {
				live = true
				break
			}
		}
		if live {
			dl.seen = true
		}
		acts = append(acts, action{k, dl, live, dl.seen})
	}
	r.mu.Unlock()

	for _, a := range acts {
		de, err := s.db.DelayedEvent(ctx, a.dl.delayID)
		if errors.Is(err, storage.ErrNotFound) {
			r.drop(a.key, a.dl) // sent or cancelled by someone else
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("delegated leave", "delay_id", a.dl.delayID, "err", err)
			}
			continue
		}
		switch {
		case !a.live && a.seen:
			// The participant left the SFU: leave the call now.
			if _, err := s.sendDelayed(ctx, a.dl.delayID); err != nil && !errors.Is(err, storage.ErrNotFound) {
				s.log.Info("sending delegated leave", "delay_id", a.dl.delayID, "err", err)
			}
			r.drop(a.key, a.dl)
		case !a.live && now-a.dl.since > delegateConnectWait.Milliseconds():
			// Never seen: stop caring; the event runs out by itself.
			s.log.Info("delegated leave: participant never connected", "user_id", a.dl.p.UserID, "room_id", a.dl.p.RoomID)
			r.drop(a.key, a.dl)
		case now-de.RunningSince >= de.DelayMS/2:
			err := s.db.WriteTx(ctx, func(tx *storage.Tx) error { return tx.RestartDelayedEvent(ctx, de.DelayID, now) })
			if err != nil && !errors.Is(err, storage.ErrNotFound) && ctx.Err() == nil {
				s.log.Warn("restarting delegated leave", "delay_id", de.DelayID, "err", err)
			}
		}
	}
}

// drop forgets a delegation unless it was replaced meanwhile.
func (r *rtcDelegations) drop(key string, dl *delegation) {
	r.mu.Lock()
	if r.byKey[key] == dl {
		delete(r.byKey, key)
	}
	r.mu.Unlock()
}
