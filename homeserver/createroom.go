package homeserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

type createRoomRequest struct {
	Visibility                string            `json:"visibility"`
	RoomAliasName             string            `json:"room_alias_name"`
	Name                      *string           `json:"name"`
	Topic                     *string           `json:"topic"`
	Invite                    []string          `json:"invite"`
	RoomVersion               string            `json:"room_version"`
	CreationContent           map[string]any    `json:"creation_content"`
	InitialState              []initialStateEvt `json:"initial_state"`
	Preset                    string            `json:"preset"`
	IsDirect                  bool              `json:"is_direct"`
	PowerLevelContentOverride map[string]any    `json:"power_level_content_override"`
}

type initialStateEvt struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

// createRoom implements POST /createRoom (spec: Client-Server API,
// "Creation"): the events are created in the spec's order, each auth-checked,
// all in one transaction so that a failure leaves no half-made room.
func (s *Server) createRoom(c echo.Context) error {
	ctx := c.Request().Context()
	d := device(c)
	var req createRoomRequest
	if err := readEventJSON(c, &req); err != nil {
		return err
	}
	ver := req.RoomVersion
	if ver == "" {
		ver = string(defaultRoomVersion)
	}
	if !rooms.SupportedVersions[ver] {
		return merr(http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION", "room version %q is not supported; use 10 or 11", ver)
	}
	switch req.Visibility {
	case "", "private", "public":
	default:
		return errInvalidParam("visibility must be public or private")
	}
	preset := req.Preset
	if preset == "" {
		preset = "private_chat"
		if req.Visibility == "public" {
			preset = "public_chat"
		}
	}
	if preset != "private_chat" && preset != "public_chat" && preset != "trusted_private_chat" {
		return errInvalidParam("unknown preset %q", preset)
	}
	for _, u := range req.Invite {
		if _, err := spec.NewUserID(u, true); err != nil {
			return errInvalidParam("invalid user ID %q", u)
		}
	}
	alias := ""
	if req.RoomAliasName != "" {
		if strings.ContainsAny(req.RoomAliasName, ":# ") {
			return errInvalidParam("room_alias_name must be a localpart")
		}
		alias = "#" + req.RoomAliasName + ":" + s.cfg.ServerName
		if err := s.checkNewAlias(alias); err != nil {
			return err
		}
		if taken, err := s.aliasTaken(ctx, alias); err != nil {
			return err
		} else if taken {
			return merr(http.StatusBadRequest, "M_ROOM_IN_USE", "Room alias %s (or one that reads the same) is already taken", alias)
		}
	}
	for _, st := range req.InitialState {
		if st.Type == "" {
			return errBadJSON("initial_state events need a type")
		}
		if err := checkCanonicalJSON(st.Content); err != nil {
			return errBadJSON("initial_state %s: %v", st.Type, err)
		}
		if st.Type == spec.MRoomCanonicalAlias && st.StateKey == "" {
			if err := checkInitialCanonicalAlias(st.Content, alias); err != nil {
				return err
			}
		}
	}
	roomID := "!" + randomString(18) + ":" + s.cfg.ServerName
	profile := s.memberProfile(ctx, d.UserID)

	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if err := tx.CreateRoom(ctx, storage.Room{RoomID: roomID, Version: ver, Creator: d.UserID,
			CreatedTS: s.nowMS(), IsPublic: req.Visibility == "public"}); err != nil {
			return err
		}
		w, err := s.rooms.Open(ctx, tx, roomID)
		if err != nil {
			return err
		}
		events, err := s.createRoomEvents(d.UserID, ver, alias, preset, profile, &req)
		if err != nil {
			return err
		}
		for _, ne := range events {
			if _, err := w.Append(ctx, ne); err != nil {
				return fmt.Errorf("createRoom: %s: %w", ne.Type, err)
			}
		}
		return nil
	})
	if err != nil {
		if me, ok := asMatrixError(err); ok {
			return me
		}
		return err
	}
	if alias != "" {
		if err := s.setNewAlias(ctx, alias, roomID, d.UserID); err != nil {
			return merr(http.StatusBadRequest, "M_ROOM_IN_USE", "Room alias %s already taken", alias)
		}
	}
	for _, u := range req.Invite {
		if !s.isLocal(u) {
			if err := s.remote.InviteRemote(ctx, roomID, d.UserID, u, "", req.IsDirect); err != nil {
				s.log.Info("createRoom: remote invite failed", "room_id", roomID, "user_id", u, "err", err)
			}
		}
	}
	s.log.Info("room created", "room_id", roomID, "creator", d.UserID, "version", ver, "preset", preset)
	resp := map[string]any{"room_id": roomID}
	if alias != "" {
		resp["room_alias"] = alias
	}
	return c.JSON(http.StatusOK, resp)
}

// createRoomEvents lists a new room's events in the spec's order.
func (s *Server) createRoomEvents(creator, ver, alias, preset string, profile map[string]any, req *createRoomRequest) ([]rooms.Event, error) {
	empty := ""
	state := func(t, sk string, content any) (rooms.Event, error) {
		b, err := json.Marshal(content)
		if err != nil {
			return rooms.Event{}, errBadJSON("%v", err)
		}
		key := sk
		return rooms.Event{Sender: creator, Type: t, StateKey: &key, Content: b}, nil
	}
	var out []rooms.Event
	add := func(t, sk string, content any) error {
		ne, err := state(t, sk, content)
		if err != nil {
			return err
		}
		out = append(out, ne)
		return nil
	}
	create := map[string]any{}
	for k, v := range req.CreationContent {
		create[k] = v
	}
	create["room_version"] = ver
	if ver == string(gomatrixserverlib.RoomVersionV10) {
		create["creator"] = creator
	}
	if err := add(spec.MRoomCreate, empty, create); err != nil {
		return nil, err
	}
	member := map[string]any{"membership": "join"}
	for k, v := range profile {
		member[k] = v
	}
	if req.IsDirect {
		member["is_direct"] = true
	}
	if err := add(spec.MRoomMember, creator, member); err != nil {
		return nil, err
	}
	if err := add(spec.MRoomPowerLevels, empty, defaultPowerLevels(creator, preset, req)); err != nil {
		return nil, err
	}
	if alias != "" {
		if err := add(spec.MRoomCanonicalAlias, empty, map[string]any{"alias": alias}); err != nil {
			return nil, err
		}
	}
	joinRule, guest := "invite", "can_join"
	if preset == "public_chat" {
		joinRule, guest = "public", "forbidden"
	}
	explicit := map[storage.StateKey]bool{}
	for _, st := range req.InitialState {
		explicit[storage.StateKey{Type: st.Type, StateKey: st.StateKey}] = true
	}
	for _, p := range []struct {
		t string
		c map[string]any
	}{
		{spec.MRoomJoinRules, map[string]any{"join_rule": joinRule}},
		{spec.MRoomHistoryVisibility, map[string]any{"history_visibility": "shared"}},
		{"m.room.guest_access", map[string]any{"guest_access": guest}},
	} {
		if !explicit[storage.StateKey{Type: p.t}] {
			if err := add(p.t, empty, p.c); err != nil {
				return nil, err
			}
		}
	}
	for _, st := range req.InitialState {
		if st.Type == spec.MRoomCreate || st.Type == spec.MRoomMember || st.Type == spec.MRoomPowerLevels {
			return nil, errBadJSON("initial_state may not contain %s", st.Type)
		}
		key := st.StateKey
		out = append(out, rooms.Event{Sender: creator, Type: st.Type, StateKey: &key, Content: st.Content})
	}
	if req.Name != nil {
		if err := add(spec.MRoomName, empty, map[string]any{"name": *req.Name}); err != nil {
			return nil, err
		}
	}
	if req.Topic != nil {
		if err := add(spec.MRoomTopic, empty, map[string]any{"topic": *req.Topic}); err != nil {
			return nil, err
		}
	}
	for _, u := range req.Invite {
		if !s.isLocal(u) {
			continue // invited over federation once the room exists
		}
		inv := map[string]any{"membership": "invite"}
		if req.IsDirect {
			inv["is_direct"] = true
		}
		if err := add(spec.MRoomMember, u, inv); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// defaultPowerLevels is the power_levels content of a new room: the
// creator at 100, then the override merged over it key by key. Group-call
// membership events (MSC3401) are open to every member, as Element Call
// expects.
func defaultPowerLevels(creator, preset string, req *createRoomRequest) map[string]any {
	users := map[string]any{creator: 100}
	if preset == "trusted_private_chat" {
		for _, u := range req.Invite {
			users[u] = 100
		}
	}
	invite := 0
	if preset == "public_chat" {
		invite = 50
	}
	pl := map[string]any{
		"users":          users,
		"users_default":  0,
		"events_default": 0,
		"state_default":  50,
		"ban":            50,
		"kick":           50,
		"redact":         50,
		"invite":         invite,
		"events": map[string]any{
			"m.room.name":                    50,
			"m.room.power_levels":            100,
			"m.room.history_visibility":      100,
			"m.room.canonical_alias":         50,
			"m.room.avatar":                  50,
			"m.room.tombstone":               100,
			"m.room.server_acl":              100,
			"m.room.encryption":              100,
			"org.matrix.msc3401.call":        100,
			"org.matrix.msc3401.call.member": 0,
			"m.call":                         100,
			"m.call.member":                  0,
		},
		"notifications": map[string]any{"room": 50},
	}
	for k, v := range req.PowerLevelContentOverride {
		pl[k] = v
	}
	return pl
}

// memberProfile returns the displayname and avatar_url to put in a user's
// member events.
func (s *Server) memberProfile(ctx context.Context, userID string) map[string]any {
	out := map[string]any{}
	name, avatar, err := s.db.DisplayProfile(ctx, userID)
	if err != nil {
		return out
	}
	if name != "" {
		out["displayname"] = name
	}
	if avatar != "" {
		out["avatar_url"] = avatar
	}
	return out
}
