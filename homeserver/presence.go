package homeserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/internal/clock"
)

// Presence (spec: Client-Server API, "Presence"; Server-Server API,
// "Presence"). It is kept in memory, like typing: it is ephemeral, and a
// restart losing it only means users look offline until they sync again.

// Presence states (spec: Client-Server API, "Presence", m.presence).
const (
	presenceOnline      = "online"
	presenceUnavailable = "unavailable"
	presenceOffline     = "offline"
)

// presenceIdleAfter is how long a local user stays online without
// syncing or setting their presence before they read as unavailable.
const presenceIdleAfter = 5 * time.Minute

// presenceScanEvery spaces the scans for idle users, so that a busy
// server's syncs do not each walk every user.
const presenceScanEvery = 10 * time.Second

// A local user's presence, other than offline, is sent again to the
// servers sharing a room with them every presencePingEvery; a remote
// user not heard of for presenceRemoteTimeout reads as offline (their
// server may be gone). Synapse uses the same 25 and 30 minutes.
const (
	presencePingEvery     = 25 * time.Minute
	presenceRemoteTimeout = 30 * time.Minute
)

// maxStatusMsg bounds a status message, in bytes.
const maxStatusMsg = 1024

func validPresence(p string) bool {
	return p == presenceOnline || p == presenceUnavailable || p == presenceOffline
}

// presenceState is what the tracker knows of one user.
type presenceState struct {
	Presence  string
	StatusMsg string
	// LastActive is when the user was last active (a sync, a presence
	// update); for remote users, as their server told.
	LastActive time.Time
	// CurrentlyActive is the remote server's word for remote users; for
	// local users it is presence == online.
	CurrentlyActive bool
	// serial is the tracker serial of the last change.
	serial int64
	// auto: a sync or the idle timeout set this state, not an explicit
	// PUT or a remote server; a sync may change it.
	auto bool
	// heard is when the state was last set (a remote user's last push);
	// pinged when a local user's state last went out over federation.
	heard, pinged time.Time
}

// presenceTracker holds every known user's presence, in memory. A change
// bumps the serial, which /sync tokens carry.
type presenceTracker struct {
	clock clock.Clock

	mu sync.Mutex // guards serial, users and lastScan
	// serial increases with every change.
	serial int64
	// lastScan is when Serial last looked for idle users.
	lastScan time.Time
	// users maps a user ID to their presence.
	users map[string]*presenceState
}

func newPresenceTracker(c clock.Clock) *presenceTracker {
	return &presenceTracker{clock: c, users: make(map[string]*presenceState)}
}

// presenceUpdate is one change asked of the tracker.
type presenceUpdate struct {
	Presence string
	// StatusMsg replaces the status message when not nil.
	StatusMsg *string
	// LastActive, when not zero, is the new last-active time.
	LastActive      time.Time
	CurrentlyActive bool
	// FromSync: a sync marks the user online only if they are offline or
	// unknown; an explicit unavailable stays until changed explicitly.
	FromSync bool
}

// Set applies u to userID and returns the new state and whether anything
// others see (presence, status message, currently_active) changed.
func (t *presenceTracker) Set(userID string, u presenceUpdate) (presenceState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.users[userID]
	if st == nil {
		st = &presenceState{Presence: presenceOffline}
		t.users[userID] = st
	}
	old := *st
	if !u.LastActive.IsZero() {
		st.LastActive = u.LastActive
	}
	// A sync marks the user online unless they chose a state themselves;
	// what a sync set, a later sync may change.
	if !u.FromSync || st.auto || st.Presence == presenceOffline || u.Presence != presenceOnline {
		st.Presence, st.CurrentlyActive, st.auto = u.Presence, u.CurrentlyActive, u.FromSync
	}
	if u.StatusMsg != nil {
		st.StatusMsg = *u.StatusMsg
	}
	st.heard = t.clock.Now()
	changed := old.Presence != st.Presence || old.StatusMsg != st.StatusMsg || old.CurrentlyActive != st.CurrentlyActive
	if changed {
		t.serial++
		st.serial = t.serial
		st.pinged = st.heard // a change goes out over federation
	}
	return *st, changed
}

// Get returns userID's presence (ok false if unknown).
func (t *presenceTracker) Get(userID string) (presenceState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.users[userID]
	if st == nil {
		return presenceState{}, false
	}
	return *st, true
}

// presenceScan is what one Serial scan found.
type presenceScan struct {
	// changed: local users who fell idle and remote users who timed out.
	changed []string
	// ping: local users whose unchanged presence is due to go out again.
	ping []string
}

// Serial returns the current serial, first (at most every
// presenceScanEvery) letting local users who went quiet fall idle
// (online → unavailable) and remote users not heard of for
// presenceRemoteTimeout go offline, and finding the local users due a
// ping.
func (t *presenceTracker) Serial(isLocal func(string) bool) (int64, presenceScan) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	var scan presenceScan
	if now.Sub(t.lastScan) < presenceScanEvery {
		return t.serial, scan
	}
	t.lastScan = now
	for u, st := range t.users {
		if st.Presence == presenceOffline {
			continue
		}
		local := isLocal(u)
		switch {
		case local && st.Presence == presenceOnline && now.Sub(st.LastActive) > presenceIdleAfter:
			// Idle is the server's doing: the user's next sync
			// makes them online again.
			st.Presence, st.CurrentlyActive, st.auto = presenceUnavailable, false, true
		case !local && now.Sub(st.heard) > presenceRemoteTimeout:
			st.Presence, st.CurrentlyActive = presenceOffline, false
		default:
			if local && now.Sub(st.pinged) > presencePingEvery {
				st.pinged = now
				scan.ping = append(scan.ping, u)
			}
			continue
		}
		t.serial++
		st.serial, st.pinged = t.serial, now
		scan.changed = append(scan.changed, u)
	}
	return t.serial, scan
}

// Changed returns the states of users for whom want is true that changed
// after serial since, by user ID. A since past the current serial (a token
// from before a restart) reads as 0: everything known.
func (t *presenceTracker) Changed(since int64, want func(string) bool) map[string]presenceState {
	t.mu.Lock()
	defer t.mu.Unlock()
	if since > t.serial {
		since = 0
	}
	out := map[string]presenceState{}
	for u, st := range t.users {
		if st.serial > since && want(u) {
			out[u] = *st
		}
	}
	return out
}

// HasChanges reports whether anything changed after serial since (or
// since is from before a restart).
func (t *presenceTracker) HasChanges(since int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.serial != since
}

// presenceContent is the content of an m.presence event (spec:
// Client-Server API, "m.presence") and the body of GET .../status.
func presenceContent(st presenceState, now time.Time) map[string]any {
	c := map[string]any{"presence": st.Presence}
	if !st.LastActive.IsZero() {
		c["last_active_ago"] = max(now.Sub(st.LastActive).Milliseconds(), 0)
	}
	if st.StatusMsg != "" {
		c["status_msg"] = st.StatusMsg
	}
	if st.Presence == presenceOnline || st.CurrentlyActive {
		c["currently_active"] = st.CurrentlyActive
	}
	return c
}

// presenceBody is the body of PUT /presence/{userId}/status.
type presenceBody struct {
	Presence  string  `json:"presence"`
	StatusMsg *string `json:"status_msg"`
}

// parsePresenceBody validates a PUT /presence/{userId}/status body.
func parsePresenceBody(body []byte) (presenceBody, error) {
	var req presenceBody
	if !json.Valid(body) {
		return req, errNotJSON("Content not JSON.")
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return req, errBadJSON("%v", err)
	}
	if req.Presence == "" {
		return req, errMissingParam("presence is required")
	}
	if !validPresence(req.Presence) {
		return req, errInvalidParam("presence must be online, unavailable or offline, not %q", req.Presence)
	}
	if req.StatusMsg != nil && len(*req.StatusMsg) > maxStatusMsg {
		return req, errInvalidParam("status_msg is longer than %d bytes", maxStatusMsg)
	}
	return req, nil
}

// putPresence implements PUT /presence/{userId}/status (spec: Client-Server
// API, "PUT /_matrix/client/v3/presence/{userId}/status").
func (s *Server) putPresence(c echo.Context) error {
	d := device(c)
	if param(c, "userId") != d.UserID {
		return errForbidden("You may only set your own presence")
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	req, err := parsePresenceBody(body)
	if err != nil {
		return err
	}
	s.setPresence(c.Request().Context(), d.UserID, presenceUpdate{Presence: req.Presence, StatusMsg: req.StatusMsg,
		LastActive: s.cfg.Now(), CurrentlyActive: req.Presence == presenceOnline})
	return c.JSON(http.StatusOK, struct{}{})
}

// getPresence implements GET /presence/{userId}/status: one's own
// presence, or that of a user sharing a room with one (as Synapse does;
// others get 403).
func (s *Server) getPresence(c echo.Context) error {
	ctx := c.Request().Context()
	me, userID := device(c).UserID, param(c, "userId")
	if serverOf(userID) == "" {
		return errInvalidParam("%q is not a user ID", userID)
	}
	if userID != me {
		if serverOf(userID) == s.cfg.ServerName {
			if _, err := s.db.UserByID(ctx, userID); errors.Is(err, storage.ErrNotFound) {
				return errNotFound("Unknown user %s", userID)
			} else if err != nil {
				return err
			}
		}
		shared, err := s.sharesRoom(ctx, me, userID)
		if err != nil {
			return err
		}
		if !shared {
			return errForbidden("You share no room with %s", userID)
		}
	}
	st, ok := s.presence.Get(userID)
	if !ok {
		st = presenceState{Presence: presenceOffline}
	}
	return c.JSON(http.StatusOK, presenceContent(st, s.cfg.Now()))
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}

// sharesRoom reports whether a and b are both joined to some room.
func (s *Server) sharesRoom(ctx context.Context, a, b string) (bool, error) {
	users, err := s.db.UsersSharingRooms(ctx, a)
	if err != nil {
		return false, err
	}
	for _, u := range users {
		if u == b {
			return true, nil
		}
	}
	return false, nil
}

// setPresence records a presence change of userID and, when it changed,
// wakes the /sync requests of the users sharing a room with them and, for
// a local user, tells the servers sharing a room with them.
func (s *Server) setPresence(ctx context.Context, userID string, u presenceUpdate) {
	st, changed := s.presence.Set(userID, u)
	if changed {
		s.presenceChanged(ctx, userID, st)
	}
}

// presenceChanged wakes the rooms of userID and sends a local user's new
// presence over federation.
func (s *Server) presenceChanged(ctx context.Context, userID string, st presenceState) {
	ms, err := s.db.Memberships(ctx, userID)
	if err != nil {
		s.log.Warn("presence: memberships", "user_id", userID, "err", err)
		return
	}
	keys := []string{userID}
	for _, m := range ms {
		if m.Membership == "join" {
			keys = append(keys, m.RoomID)
		}
	}
	s.notifier.Notify(0, keys...)
	if serverOf(userID) == s.cfg.ServerName {
		s.fed.sendPresence(ctx, userID, st)
	}
}

// syncSetPresence applies /sync's set_presence parameter (spec: "GET
// /sync": omitted marks the user online, "offline" leaves them as they
// are, "unavailable" marks them idle).
func (s *Server) syncSetPresence(ctx context.Context, userID, setPresence string) error {
	switch setPresence {
	case "":
		setPresence = presenceOnline
	case presenceOffline:
		return nil
	case presenceOnline, presenceUnavailable:
	default:
		return errInvalidParam("set_presence must be online, unavailable or offline")
	}
	s.setPresence(ctx, userID, presenceUpdate{Presence: setPresence, LastActive: s.cfg.Now(),
		CurrentlyActive: setPresence == presenceOnline, FromSync: true})
	return nil
}

// presenceSerial returns the presence serial for a /sync token, first
// announcing local users who fell idle and remote users who timed out,
// and sending the pings that are due.
func (s *Server) presenceSerial(ctx context.Context) int64 {
	serial, scan := s.presence.Serial(func(u string) bool { return serverOf(u) == s.cfg.ServerName })
	for _, u := range scan.changed {
		if st, ok := s.presence.Get(u); ok {
			s.presenceChanged(ctx, u, st)
		}
	}
	for _, u := range scan.ping {
		if st, ok := s.presence.Get(u); ok {
			s.fed.sendPresence(ctx, u, st)
		}
	}
	return serial
}

// syncPresence returns the m.presence events for a /sync response: the
// users sharing a room with userID (and userID) whose presence changed
// after serial since.
func (s *Server) syncPresence(ctx context.Context, userID string, since int64) ([]any, error) {
	if !s.presence.HasChanges(since) {
		return nil, nil
	}
	changed := s.presence.Changed(since, func(string) bool { return true })
	var set map[string]bool
	if len(changed) > 1 || len(changed) == 1 && !hasKey(changed, userID) {
		// Only then is the query of who shares a room with us needed.
		shared, err := s.db.UsersSharingRooms(ctx, userID)
		if err != nil {
			return nil, err
		}
		set = make(map[string]bool, len(shared))
		for _, u := range shared {
			set[u] = true
		}
	}
	users := make([]string, 0, len(changed))
	for u := range changed {
		if u == userID || set[u] {
			users = append(users, u)
		}
	}
	sort.Strings(users)
	now := s.cfg.Now()
	evs := make([]any, 0, len(users))
	for _, u := range users {
		evs = append(evs, map[string]any{"type": "m.presence", "sender": u, "content": presenceContent(changed[u], now)})
	}
	return evs, nil
}
