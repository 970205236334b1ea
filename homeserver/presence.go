package homeserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	hsync "github.com/switchboard-chat/switchboard/homeserver/sync"
)

// Presence (spec: Client-Server API, "Presence"; Server-Server API,
// "Presence"). It is kept in memory, like typing: it is ephemeral, and a
// restart losing it only means users look offline until they sync again.

// The presence state itself is the sync package's Ephemeral (typing and
// presence behind one interface, so a cluster can share it); these names
// keep this file's handlers short.
type (
	presenceState  = hsync.PresenceState
	presenceUpdate = hsync.PresenceUpdate
)

const (
	presenceOnline      = hsync.PresenceOnline
	presenceUnavailable = hsync.PresenceUnavailable
	presenceOffline     = hsync.PresenceOffline
	presenceIdleAfter   = hsync.PresenceIdleAfter
)

// maxStatusMsg bounds a status message, in bytes.
const maxStatusMsg = 1024

func validPresence(p string) bool {
	return p == presenceOnline || p == presenceUnavailable || p == presenceOffline
}

func presenceContent(st presenceState, now time.Time) map[string]any {
	return hsync.PresenceContent(st, now)
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
	st, ok := s.eph.Presence(userID)
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
	st, changed := s.eph.SetPresence(userID, u)
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
		s.edus.SendPresence(ctx, userID, fedPresence(st))
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

// ScanPresence returns the presence serial for a /sync response
// (hsync.PresenceScanner), first announcing local users who fell idle and
// remote users who timed out, and sending the pings that are due.
func (d syncDeps) ScanPresence(ctx context.Context) int64 {
	s := d.s
	serial, scan := s.eph.ScanPresence(func(u string) bool { return serverOf(u) == s.cfg.ServerName })
	for _, u := range scan.Changed {
		if st, ok := s.eph.Presence(u); ok {
			s.presenceChanged(ctx, u, st)
		}
	}
	for _, u := range scan.Ping {
		if st, ok := s.eph.Presence(u); ok {
			s.edus.SendPresence(ctx, u, fedPresence(st))
		}
	}
	return serial
}
