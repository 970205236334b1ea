package homeserver

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Server-side key backup (spec: Client-Server API, "End-to-end encryption",
// "Server-side key backups"). The server keeps what the client sends
// opaque (auth_data and session_data are the client's), enforces one
// current version for writes, and keeps the better of two copies of a
// session's key.

// roomKeysRoutes registers /room_keys.
func (s *Server) roomKeysRoutes(a api) {
	a.authed(http.MethodPost, "/room_keys/version", s.createKeyBackup)
	a.authed(http.MethodGet, "/room_keys/version", s.getKeyBackup)
	a.authed(http.MethodGet, "/room_keys/version/:version", s.getKeyBackup)
	a.authed(http.MethodPut, "/room_keys/version/:version", s.putKeyBackup)
	a.authed(http.MethodDelete, "/room_keys/version/:version", s.deleteKeyBackup)
	for _, p := range []string{"/room_keys/keys", "/room_keys/keys/:roomId", "/room_keys/keys/:roomId/:sessionId"} {
		a.authed(http.MethodPut, p, s.putRoomKeys)
		a.authed(http.MethodGet, p, s.getRoomKeys)
		a.authed(http.MethodDelete, p, s.deleteRoomKeys)
	}
}

// keyBackupBody is the body of POST and PUT /room_keys/version.
type keyBackupBody struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Version   *string         `json:"version"`
}

func parseKeyBackupBody(c echo.Context) (keyBackupBody, error) {
	var req keyBackupBody
	if err := readJSON(c, &req); err != nil {
		return req, err
	}
	if req.Algorithm == "" || len(req.AuthData) == 0 {
		return req, errMissingParam("algorithm and auth_data are required")
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(req.AuthData, &obj) != nil || obj == nil {
		return req, errBadJSON("auth_data must be an object")
	}
	return req, nil
}

// parseVersion reads a version number; ok false for anything this server
// never issued.
func parseVersion(v string) (int64, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n > 0 && strconv.FormatInt(n, 10) == v
}

func errNoBackup(v string) error {
	if v == "" {
		return errNotFound("No current backup version")
	}
	return errNotFound("Unknown backup version %q", v)
}

// createKeyBackup implements POST /room_keys/version.
func (s *Server) createKeyBackup(c echo.Context) error {
	req, err := parseKeyBackupBody(c)
	if err != nil {
		return err
	}
	v, err := s.db.CreateKeyBackup(c.Request().Context(), device(c).UserID, req.Algorithm, req.AuthData)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"version": strconv.FormatInt(v, 10)})
}

// getKeyBackup implements GET /room_keys/version[/{version}].
func (s *Server) getKeyBackup(c echo.Context) error {
	raw := param(c, "version")
	var v int64
	if raw != "" {
		var ok bool
		if v, ok = parseVersion(raw); !ok {
			return errNoBackup(raw)
		}
	}
	kb, err := s.db.KeyBackup(c.Request().Context(), device(c).UserID, v)
	if errors.Is(err, storage.ErrNotFound) {
		return errNoBackup(raw)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{
		"algorithm": kb.Algorithm, "auth_data": json.RawMessage(kb.AuthData),
		"count": kb.Count, "etag": strconv.FormatInt(kb.Etag, 10), "version": strconv.FormatInt(kb.Version, 10),
	})
}

// putKeyBackup implements PUT /room_keys/version/{version}: auth_data
// changes; the algorithm and version must stay.
func (s *Server) putKeyBackup(c echo.Context) error {
	raw := param(c, "version")
	req, err := parseKeyBackupBody(c)
	if err != nil {
		return err
	}
	if req.Version != nil && *req.Version != raw {
		return errInvalidParam("the version in the body does not match the path")
	}
	v, ok := parseVersion(raw)
	if !ok {
		return errNoBackup(raw)
	}
	ctx := c.Request().Context()
	userID := device(c).UserID
	kb, err := s.db.KeyBackup(ctx, userID, v)
	if errors.Is(err, storage.ErrNotFound) {
		return errNoBackup(raw)
	}
	if err != nil {
		return err
	}
	if kb.Algorithm != req.Algorithm {
		return errInvalidParam("the algorithm of a backup version cannot change")
	}
	if err := s.db.UpdateKeyBackup(ctx, userID, v, req.AuthData); errors.Is(err, storage.ErrNotFound) {
		return errNoBackup(raw)
	} else if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

// deleteKeyBackup implements DELETE /room_keys/version/{version}.
func (s *Server) deleteKeyBackup(c echo.Context) error {
	raw := param(c, "version")
	v, ok := parseVersion(raw)
	if !ok {
		return errNoBackup(raw)
	}
	if err := s.db.DeleteKeyBackup(c.Request().Context(), device(c).UserID, v); errors.Is(err, storage.ErrNotFound) {
		return errNoBackup(raw)
	} else if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

// keyBackupData is one session's backed-up key (spec: "KeyBackupData").
type keyBackupData struct {
	FirstMessageIndex *int64          `json:"first_message_index"`
	ForwardedCount    *int64          `json:"forwarded_count"`
	IsVerified        *bool           `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

func (d keyBackupData) toKey(roomID, sessionID string) (storage.RoomKey, error) {
	if d.FirstMessageIndex == nil || d.ForwardedCount == nil || d.IsVerified == nil || len(d.SessionData) == 0 {
		return storage.RoomKey{}, errMissingParam("first_message_index, forwarded_count, is_verified and session_data are required")
	}
	if *d.FirstMessageIndex < 0 || *d.ForwardedCount < 0 {
		return storage.RoomKey{}, errInvalidParam("first_message_index and forwarded_count are not negative")
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(d.SessionData, &obj) != nil || obj == nil {
		return storage.RoomKey{}, errBadJSON("session_data must be an object")
	}
	if roomID == "" || sessionID == "" {
		return storage.RoomKey{}, errInvalidParam("room and session IDs are not empty")
	}
	return storage.RoomKey{RoomID: roomID, SessionID: sessionID, FirstMessageIndex: *d.FirstMessageIndex,
		ForwardedCount: *d.ForwardedCount, IsVerified: *d.IsVerified, SessionData: d.SessionData}, nil
}

type roomKeysRoom struct {
	Sessions map[string]keyBackupData `json:"sessions"`
}

// parseRoomKeys reads a PUT body at the level the path names: every
// room, one room, or one session.
func parseRoomKeys(body []byte, roomID, sessionID string) ([]storage.RoomKey, error) {
	if !json.Valid(body) {
		return nil, errNotJSON("Content not JSON.")
	}
	var keys []storage.RoomKey
	addRoom := func(room string, r roomKeysRoom) error {
		for sid, d := range r.Sessions {
			k, err := d.toKey(room, sid)
			if err != nil {
				return err
			}
			keys = append(keys, k)
		}
		return nil
	}
	switch {
	case sessionID != "":
		var d keyBackupData
		if err := json.Unmarshal(body, &d); err != nil {
			return nil, errBadJSON("%v", err)
		}
		k, err := d.toKey(roomID, sessionID)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	case roomID != "":
		var r roomKeysRoom
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, errBadJSON("%v", err)
		}
		if err := addRoom(roomID, r); err != nil {
			return nil, err
		}
	default:
		var all struct {
			Rooms map[string]roomKeysRoom `json:"rooms"`
		}
		if err := json.Unmarshal(body, &all); err != nil {
			return nil, errBadJSON("%v", err)
		}
		for room, r := range all.Rooms {
			if err := addRoom(room, r); err != nil {
				return nil, err
			}
		}
	}
	return keys, nil
}

// keysVersion reads the required version query parameter.
func keysVersion(c echo.Context) (string, int64, error) {
	raw := c.QueryParam("version")
	if raw == "" {
		return "", 0, errMissingParam("the version query parameter is required")
	}
	v, _ := parseVersion(raw)
	return raw, v, nil
}

// putRoomKeys implements PUT /room_keys/keys[/{roomId}[/{sessionId}]].
func (s *Server) putRoomKeys(c echo.Context) error {
	_, v, err := keysVersion(c)
	if err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	keys, err := parseRoomKeys(body, param(c, "roomId"), param(c, "sessionId"))
	if err != nil {
		return err
	}
	count, etag, err := s.db.PutRoomKeys(c.Request().Context(), device(c).UserID, v, keys)
	var wrong *storage.WrongKeyBackupVersionError
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return errNoBackup("")
	case errors.As(err, &wrong):
		// Spec: 403 M_WRONG_ROOM_KEYS_VERSION with current_version.
		e := merr(http.StatusForbidden, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version.")
		e.Extra = map[string]any{"current_version": strconv.FormatInt(wrong.Current, 10)}
		return e
	case err != nil:
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"count": count, "etag": strconv.FormatInt(etag, 10)})
}

// getRoomKeys implements GET /room_keys/keys[/{roomId}[/{sessionId}]].
func (s *Server) getRoomKeys(c echo.Context) error {
	raw, v, err := keysVersion(c)
	if err != nil {
		return err
	}
	if v == 0 {
		return errNoBackup(raw)
	}
	roomID, sessionID := param(c, "roomId"), param(c, "sessionId")
	keys, err := s.db.RoomKeys(c.Request().Context(), device(c).UserID, v, roomID, sessionID)
	if errors.Is(err, storage.ErrNotFound) {
		return errNoBackup(raw)
	}
	if err != nil {
		return err
	}
	data := func(k storage.RoomKey) keyBackupData {
		return keyBackupData{FirstMessageIndex: &k.FirstMessageIndex, ForwardedCount: &k.ForwardedCount,
			IsVerified: &k.IsVerified, SessionData: k.SessionData}
	}
	switch {
	case sessionID != "":
		if len(keys) == 0 {
			return errNotFound("No backed-up key for this session")
		}
		return c.JSON(http.StatusOK, data(keys[0]))
	case roomID != "":
		r := roomKeysRoom{Sessions: map[string]keyBackupData{}}
		for _, k := range keys {
			r.Sessions[k.SessionID] = data(k)
		}
		return c.JSON(http.StatusOK, r)
	}
	rooms := map[string]roomKeysRoom{}
	for _, k := range keys {
		r, ok := rooms[k.RoomID]
		if !ok {
			r = roomKeysRoom{Sessions: map[string]keyBackupData{}}
			rooms[k.RoomID] = r
		}
		r.Sessions[k.SessionID] = data(k)
	}
	return c.JSON(http.StatusOK, map[string]any{"rooms": rooms})
}

// deleteRoomKeys implements DELETE /room_keys/keys[/{roomId}[/{sessionId}]].
func (s *Server) deleteRoomKeys(c echo.Context) error {
	raw, v, err := keysVersion(c)
	if err != nil {
		return err
	}
	count, etag, err := s.db.DeleteRoomKeys(c.Request().Context(), device(c).UserID, v, param(c, "roomId"), param(c, "sessionId"))
	if errors.Is(err, storage.ErrNotFound) {
		return errNoBackup(raw)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"count": count, "etag": strconv.FormatInt(etag, 10)})
}
