package homeserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// setMembership sends an m.room.member event for target, sent by sender
// (spec: Client-Server API, "Room membership").
func (s *Server) setMembership(c echo.Context, roomID, sender, target, membership, reason string, extra map[string]any) (string, error) {
	content := map[string]any{"membership": membership}
	if membership == "join" || membership == "invite" {
		for k, v := range s.memberProfile(c.Request().Context(), target) {
			content[k] = v
		}
	}
	if reason != "" {
		content["reason"] = reason
	}
	for k, v := range extra {
		content[k] = v
	}
	b, err := json.Marshal(content)
	if err != nil {
		return "", err
	}
	key := target
	return s.sendEventTx(c.Request().Context(), roomID, rooms.Event{Sender: sender, Type: spec.MRoomMember, StateKey: &key, Content: b})
}

func (s *Server) joinRoom(c echo.Context) error {
	return s.join(c, param(c, "roomId"), nil)
}

func (s *Server) joinRoomByIDOrAlias(c echo.Context) error {
	target := param(c, "room")
	var servers []string
	if strings.HasPrefix(target, "#") && !strings.HasSuffix(target, ":"+s.cfg.ServerName) {
		// An alias of another server: ask it (federation query/directory).
		roomID, via, err := s.queries.QueryAlias(c.Request().Context(), target)
		if err != nil {
			return err
		}
		target, servers = roomID, via
	} else if strings.HasPrefix(target, "#") {
		roomID, _, err := s.db.Alias(c.Request().Context(), target)
		if errors.Is(err, storage.ErrNotFound) {
			return errNotFound("Room alias %s not found", target)
		}
		if err != nil {
			return err
		}
		target = roomID
	} else if !strings.HasPrefix(target, "!") {
		return errInvalidParam("%q is neither a room ID nor an alias", target)
	}
	return s.join(c, target, servers)
}

func (s *Server) join(c echo.Context, roomID string, servers []string) error {
	var req struct {
		Reason string `json:"reason"`
	}
	if err := readEventJSON(c, &req); err != nil {
		return err
	}
	d := device(c)
	ctx := c.Request().Context()
	// Joining a room one is already joined to is a no-op success.
	if m, err := s.db.Membership(ctx, roomID, d.UserID); err != nil {
		return err
	} else if m == "join" {
		return c.JSON(http.StatusOK, map[string]string{"room_id": roomID})
	}
	// A room this server is not in is joined through another server
	// (federation_join.go), via the servers the client named.
	if remote, err := s.remote.NeedsRemoteJoin(ctx, roomID); err != nil {
		return err
	} else if remote {
		q := c.QueryParams()
		named := append(append(servers, q["server_name"]...), q["via"]...)
		if err := s.remote.JoinRemote(ctx, roomID, d.UserID, s.remote.JoinServers(ctx, roomID, d.UserID, named)); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]string{"room_id": roomID})
	}
	if _, err := s.setMembership(c, roomID, d.UserID, d.UserID, "join", req.Reason, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"room_id": roomID})
}

// membershipOf handles invite, kick (leave), ban and unban of another user.
func (s *Server) membershipOf(action string) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req struct {
			UserID string `json:"user_id"`
			Reason string `json:"reason"`
		}
		if err := readEventJSON(c, &req); err != nil {
			return err
		}
		if req.UserID == "" {
			return errMissingParam("user_id is required")
		}
		if _, err := spec.NewUserID(req.UserID, true); err != nil {
			return errInvalidParam("invalid user_id %q", req.UserID)
		}
		roomID := param(c, "roomId")
		d := device(c)
		membership := action
		if action == "unban" {
			m, err := s.db.Membership(c.Request().Context(), roomID, req.UserID)
			if err != nil {
				return err
			}
			if m != "ban" {
				return errForbidden("%s is not banned", req.UserID)
			}
			membership = "leave"
		}
		if action == "invite" {
			m, err := s.db.Membership(c.Request().Context(), roomID, req.UserID)
			if err != nil {
				return err
			}
			if m == "join" || m == "ban" {
				return errForbidden("%s is already in the room or banned", req.UserID)
			}
		}
		if action == "invite" && !s.isLocal(req.UserID) {
			// The invitee's server signs remote invites (federation_invite.go).
			if err := s.remote.InviteRemote(c.Request().Context(), roomID, d.UserID, req.UserID, req.Reason, false); err != nil {
				return err
			}
			return c.JSON(http.StatusOK, struct{}{})
		}
		if _, err := s.setMembership(c, roomID, d.UserID, req.UserID, membership, req.Reason, nil); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, struct{}{})
	}
}

func (s *Server) leaveRoom(c echo.Context) error {
	var req struct {
		Reason string `json:"reason"`
	}
	if err := readEventJSON(c, &req); err != nil {
		return err
	}
	d := device(c)
	roomID := param(c, "roomId")
	m, err := s.db.Membership(c.Request().Context(), roomID, d.UserID)
	if err != nil {
		return err
	}
	switch m {
	case "leave", "ban":
		return c.JSON(http.StatusOK, struct{}{})
	case "":
		return errNotFound("You are not in room %s", roomID)
	}
	if remote, err := s.remote.NeedsRemoteJoin(c.Request().Context(), roomID); err != nil {
		return err
	} else if remote {
		// Rejecting an invite to a room this server is not in goes through
		// the room's servers (make_leave/send_leave, federation_invite.go).
		if err := s.remote.LeaveRemote(c.Request().Context(), roomID, d.UserID); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, struct{}{})
	}
	if _, err := s.setMembership(c, roomID, d.UserID, d.UserID, "leave", req.Reason, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

func (s *Server) forgetRoom(c echo.Context) error {
	d := device(c)
	roomID := param(c, "roomId")
	m, err := s.db.Membership(c.Request().Context(), roomID, d.UserID)
	if err != nil {
		return err
	}
	if m == "join" || m == "invite" {
		return merr(http.StatusBadRequest, "M_UNKNOWN", "Leave the room before forgetting it")
	}
	if m == "" {
		return errNotFound("Unknown room %s", roomID)
	}
	if err := s.db.Forget(c.Request().Context(), d.UserID, roomID); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

// requireJoined answers 403 unless userID is joined to roomID.
func (s *Server) requireJoined(c echo.Context, roomID, userID string) error {
	m, err := s.db.Membership(c.Request().Context(), roomID, userID)
	if err != nil {
		return err
	}
	if m != "join" {
		return errForbidden("You are not joined to room %s", roomID)
	}
	return nil
}

func (s *Server) joinedRooms(c echo.Context) error {
	ms, err := s.db.Memberships(c.Request().Context(), device(c).UserID)
	if err != nil {
		return err
	}
	rooms := []string{}
	for _, m := range ms {
		if m.Membership == "join" {
			rooms = append(rooms, m.RoomID)
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"joined_rooms": rooms})
}

func (s *Server) members(c echo.Context) error {
	roomID := param(c, "roomId")
	d := device(c)
	r, err := s.readerOf(c.Request().Context(), roomID, d.UserID)
	if err != nil {
		return err
	}
	state, err := s.readableState(c.Request().Context(), roomID, r)
	if err != nil {
		return err
	}
	want, notWant := c.QueryParam("membership"), c.QueryParam("not_membership")
	var chunk []storage.Event
	for _, e := range state {
		if e.Type != spec.MRoomMember {
			continue
		}
		m := membershipOfEvent(e)
		if (want != "" && m != want) || (notWant != "" && m == notWant) {
			continue
		}
		chunk = append(chunk, e)
	}
	return c.JSON(http.StatusOK, map[string]any{"chunk": toClientList(chunk, viewer{d.UserID, d.DeviceID}, s.nowMS(), true)})
}

func (s *Server) joinedMembers(c echo.Context) error {
	roomID := param(c, "roomId")
	if err := s.requireJoined(c, roomID, device(c).UserID); err != nil {
		return err
	}
	state, err := s.db.CurrentState(c.Request().Context(), roomID)
	if err != nil {
		return err
	}
	joined := map[string]any{}
	for _, e := range state {
		if e.Type != spec.MRoomMember || membershipOfEvent(e) != "join" {
			continue
		}
		var content struct {
			DisplayName *string `json:"displayname"`
			AvatarURL   *string `json:"avatar_url"`
		}
		_ = json.Unmarshal(contentOf(e), &content)
		joined[*e.StateKey] = map[string]any{"display_name": content.DisplayName, "avatar_url": content.AvatarURL}
	}
	return c.JSON(http.StatusOK, map[string]any{"joined": joined})
}

// contentOf returns a stored event's content.
func contentOf(e storage.Event) json.RawMessage {
	var f pduFields
	_ = json.Unmarshal(e.JSON, &f)
	return f.Content
}

func membershipOfEvent(e storage.Event) string {
	var content struct {
		Membership string `json:"membership"`
	}
	_ = json.Unmarshal(contentOf(e), &content)
	return content.Membership
}

// propagateProfile sends a fresh m.room.member join event, carrying the
// user's current displayname and avatar_url, into every room they are
// joined to (spec: Client-Server API, "Events on Change of Profile
// Information"). A room that refuses it (e.g. power levels) is skipped.
func (s *Server) propagateProfile(ctx context.Context, userID string) {
	ms, err := s.db.Memberships(ctx, userID)
	if err != nil {
		s.log.Warn("profile propagation: memberships", "user_id", userID, "err", err)
		return
	}
	profile := s.memberProfile(ctx, userID)
	for _, m := range ms {
		if m.Membership != "join" {
			continue
		}
		content := map[string]any{"membership": "join"}
		if prev, err := s.db.CurrentStateEvent(ctx, m.RoomID, spec.MRoomMember, userID); err == nil {
			_ = json.Unmarshal(contentOf(prev), &content)
		}
		delete(content, "displayname")
		delete(content, "avatar_url")
		delete(content, "reason")
		for k, v := range profile {
			content[k] = v
		}
		b, _ := json.Marshal(content)
		key := userID
		if _, err := s.sendEventTx(ctx, m.RoomID, rooms.Event{Sender: userID, Type: spec.MRoomMember, StateKey: &key, Content: b}); err != nil {
			s.log.Info("profile propagation: room refused the member event", "room_id", m.RoomID, "user_id", userID, "err", err)
		}
	}
}
