package homeserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/federation"
	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// splitUserID splits "@local:server" (spec: Appendices, "User Identifiers").
func splitUserID(id string) (local, server string, ok bool) {
	if !strings.HasPrefix(id, "@") {
		return "", "", false
	}
	local, server, ok = strings.Cut(id[1:], ":")
	return local, server, ok && local != "" && server != ""
}

func (s *Server) validAlias(alias string) bool {
	return strings.HasPrefix(alias, "#") && strings.HasSuffix(alias, ":"+s.cfg.ServerName) && len(alias) <= 255
}

func (s *Server) getAlias(c echo.Context) error {
	alias := param(c, "alias")
	if remote, err := s.remoteAlias(c, alias); remote || err != nil {
		return err
	}
	roomID, _, err := s.db.Alias(c.Request().Context(), alias)
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("Room alias %s not found", alias)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"room_id": roomID, "servers": []string{s.cfg.ServerName}})
}

func (s *Server) putAlias(c echo.Context) error {
	alias := param(c, "alias")
	if err := s.checkNewAlias(alias); err != nil {
		return err
	}
	var req struct {
		RoomID string `json:"room_id"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if _, err := s.db.Room(c.Request().Context(), req.RoomID); errors.Is(err, storage.ErrNotFound) {
		return errNotFound("Unknown room %s", req.RoomID)
	} else if err != nil {
		return err
	}
	if err := s.requireJoined(c, req.RoomID, device(c).UserID); err != nil {
		return err
	}
	err := s.setNewAlias(c.Request().Context(), alias, req.RoomID, device(c).UserID)
	if errors.Is(err, storage.ErrExists) {
		return merr(http.StatusConflict, "M_UNKNOWN", "Room alias %s (or one that reads the same) already exists", alias)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

func (s *Server) deleteAlias(c echo.Context) error {
	alias := param(c, "alias")
	_, creator, err := s.db.Alias(c.Request().Context(), alias)
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("Room alias %s not found", alias)
	}
	if err != nil {
		return err
	}
	if creator != device(c).UserID {
		return errForbidden("Only the alias's creator may delete it")
	}
	if err := s.db.DeleteAlias(c.Request().Context(), alias); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

func (s *Server) getVisibility(c echo.Context) error {
	r, err := s.db.Room(c.Request().Context(), param(c, "roomId"))
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("Unknown room")
	}
	if err != nil {
		return err
	}
	v := "private"
	if r.IsPublic {
		v = "public"
	}
	return c.JSON(http.StatusOK, map[string]string{"visibility": v})
}

func (s *Server) putVisibility(c echo.Context) error {
	var req struct {
		Visibility string `json:"visibility"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if req.Visibility != "public" && req.Visibility != "private" {
		return errInvalidParam("visibility must be public or private")
	}
	roomID := param(c, "roomId")
	d := device(c)
	if err := s.requireJoined(c, roomID, d.UserID); err != nil {
		return err
	}
	// Who may change it: as for a state event (spec: Client-Server API,
	// "PUT /directory/list/room/{roomId}" leaves it to the server).
	pl, err := rooms.CurrentPowerLevels(c.Request().Context(), s.db, roomID)
	if err != nil {
		return err
	}
	if pl.UserLevel(spec.SenderID(d.UserID)) < pl.StateDefault {
		return errForbidden("Changing the room's directory visibility needs power level %d", pl.StateDefault)
	}
	if err := s.db.SetRoomPublic(c.Request().Context(), roomID, req.Visibility == "public"); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

// publicRooms implements GET/POST /publicRooms (basic: paginated by
// offset, no search filter): this server's directory, or with ?server=
// another server's, asked over federation (spec: Client-Server API,
// "GET /publicRooms", and Server-Server API, "GET /publicRooms").
func (s *Server) publicRooms(c echo.Context) error {
	ctx := c.Request().Context()
	var term string
	limit, since, err := federation.DirectoryPage(c, func(v any) error {
		body, err := readPublicRoomsFilter(c, &term)
		if err != nil {
			return err
		}
		return json.Unmarshal(body, v)
	})
	if err != nil {
		return err
	}
	if server := c.QueryParam("server"); server != "" && server != s.cfg.ServerName {
		if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(server)); !ok {
			return errInvalidParam("server %q is not a server name", server)
		}
		resp, err := s.queries.QueryDirectory(ctx, server, limit, since)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, resp)
	}
	if term != "" {
		resp, err := s.searchPublicRooms(ctx, term, limit, since)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, resp)
	}
	resp, err := s.publicRoomsPage(ctx, limit, since)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}

// publicRoomsPage is one page of this server's room directory, for
// clients and for other servers.
func (s *Server) publicRoomsPage(ctx context.Context, limit int, since string) (map[string]any, error) {
	offset := 0
	if since != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(since, "o"))
		if err != nil || n < 0 {
			return nil, errInvalidParam("invalid since token")
		}
		offset = n
	}
	ids, total, err := s.db.PublicRooms(ctx, limit, offset)
	if err != nil {
		return nil, err
	}
	chunk := []map[string]any{}
	for _, id := range ids {
		state, err := s.db.CurrentState(ctx, id)
		if err != nil {
			return nil, err
		}
		entry := map[string]any{"room_id": id, "world_readable": false, "guest_can_join": false, "num_joined_members": 0, "join_rule": "invite"}
		joined := 0
		for _, e := range state {
			var content map[string]any
			_ = json.Unmarshal(contentOf(e), &content)
			switch e.Type {
			case spec.MRoomName:
				entry["name"] = content["name"]
			case spec.MRoomTopic:
				entry["topic"] = content["topic"]
			case spec.MRoomCanonicalAlias:
				entry["canonical_alias"] = content["alias"]
			case "m.room.avatar":
				entry["avatar_url"] = content["url"]
			case spec.MRoomJoinRules:
				entry["join_rule"] = content["join_rule"]
			case spec.MRoomHistoryVisibility:
				entry["world_readable"] = content["history_visibility"] == "world_readable"
			case "m.room.guest_access":
				entry["guest_can_join"] = content["guest_access"] == "can_join"
			case spec.MRoomMember:
				if content["membership"] == "join" {
					joined++
				}
			}
		}
		entry["num_joined_members"] = joined
		chunk = append(chunk, entry)
	}
	resp := map[string]any{"chunk": chunk, "total_room_count_estimate": total}
	if offset+len(ids) < total {
		resp["next_batch"] = "o" + strconv.Itoa(offset+len(ids))
	}
	if offset > 0 {
		resp["prev_batch"] = "o" + strconv.Itoa(max(offset-limit, 0))
	}
	return resp, nil
}
