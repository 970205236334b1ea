package homeserver

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/push"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// pushRoutes registers pushers and notifications (spec: Client-Server
// API, "Push Notifications", "Client behaviour").
func (s *Server) pushRoutes(a api) {
	a.authed(http.MethodGet, "/pushers", s.getPushers)
	a.authed(http.MethodPost, "/pushers/set", s.setPusher)
	a.authed(http.MethodGet, "/notifications", s.getNotifications)
}

// pusherJSON is a pusher as GET /pushers lists it and POST /pushers/set
// takes it.
type pusherJSON struct {
	Pushkey           string          `json:"pushkey"`
	Kind              *string         `json:"kind"`
	AppID             string          `json:"app_id"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag,omitempty"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`
}

// getPushers implements GET /pushers.
func (s *Server) getPushers(c echo.Context) error {
	ps, err := s.db.Pushers(c.Request().Context(), device(c).UserID)
	if err != nil {
		return err
	}
	out := make([]pusherJSON, 0, len(ps))
	for _, p := range ps {
		kind := p.Kind
		out = append(out, pusherJSON{Pushkey: p.Pushkey, Kind: &kind, AppID: p.AppID, AppDisplayName: p.AppDisplayName,
			DeviceDisplayName: p.DeviceDisplayName, ProfileTag: p.ProfileTag, Lang: p.Lang, Data: p.Data})
	}
	return c.JSON(http.StatusOK, map[string]any{"pushers": out})
}

// Spec limits ("POST /pushers/set"): app_id at most 64 characters,
// pushkey at most 512 bytes.
const (
	maxAppIDLen   = 64
	maxPushkeyLen = 512
)

// setPusherRequest is the body of POST /pushers/set.
type setPusherRequest struct {
	pusherJSON
	Append bool `json:"append"`
}

// parseSetPusher validates a POST /pushers/set body. kind null deletes
// the pusher named by app_id and pushkey (del reports that).
func parseSetPusher(body []byte) (req setPusherRequest, del bool, err error) {
	if !json.Valid(body) {
		return req, false, errNotJSON("Content not JSON.")
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return req, false, errBadJSON("%v", err)
	}
	if req.AppID == "" || req.Pushkey == "" {
		return req, false, errMissingParam("app_id and pushkey are required")
	}
	if len(req.AppID) > maxAppIDLen || len(req.Pushkey) > maxPushkeyLen {
		return req, false, errInvalidParam("app_id is at most 64 characters and pushkey at most 512 bytes")
	}
	if req.Kind == nil {
		return req, true, nil
	}
	if *req.Kind != "http" {
		return req, false, errInvalidParam("pusher kind %q is not supported (only http)", *req.Kind)
	}
	if req.AppDisplayName == "" || req.DeviceDisplayName == "" || req.Lang == "" || len(req.Data) == 0 {
		return req, false, errMissingParam("app_display_name, device_display_name, lang and data are required")
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(req.Data, &data); err != nil || data == nil {
		return req, false, errBadJSON("data must be an object")
	}
	var pd push.PusherData
	_ = json.Unmarshal(req.Data, &pd)
	if pd.URL == "" {
		return req, false, errMissingParam("data.url is required for http pushers")
	}
	// Spec: the URL "MUST have the path /_matrix/push/v1/notify".
	u, err := url.Parse(pd.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "/_matrix/push/v1/notify" || u.User != nil {
		return req, false, errInvalidParam("data.url must be an http(s) URL with the path /_matrix/push/v1/notify")
	}
	return req, false, nil
}

// setPusher implements POST /pushers/set: add, replace (same app_id and
// pushkey), delete (kind null) and append.
func (s *Server) setPusher(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	req, del, err := parseSetPusher(body)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	d := device(c)
	if del {
		if err := s.db.DeletePusher(ctx, d.UserID, req.AppID, req.Pushkey); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, struct{}{})
	}
	p := storage.Pusher{UserID: d.UserID, DeviceID: d.DeviceID, AppID: req.AppID, Pushkey: req.Pushkey, Kind: *req.Kind,
		AppDisplayName: req.AppDisplayName, DeviceDisplayName: req.DeviceDisplayName, ProfileTag: req.ProfileTag,
		Lang: req.Lang, Data: req.Data, CreatedTS: s.nowMS()}
	if _, err := s.db.SetPusher(ctx, p, req.Append); err != nil {
		return err
	}
	s.push.Wake(p.UserID, p.AppID, p.Pushkey)
	return c.JSON(http.StatusOK, struct{}{})
}

// getNotifications implements GET /notifications: the user's
// notifications, newest first, paged by from/next_token.
func (s *Server) getNotifications(c echo.Context) error {
	ctx := c.Request().Context()
	d := device(c)
	limit := 20
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return errInvalidParam("limit must be a positive integer")
		}
		limit = min(n, 100)
	}
	var before int64
	if v := c.QueryParam("from"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return errInvalidParam("from is not a token this server gave")
		}
		before = n
	}
	ns, err := s.db.NotificationsPage(ctx, d.UserID, before, limit, c.QueryParam("only") == "highlight")
	if err != nil {
		return err
	}
	out := make([]map[string]any, 0, len(ns))
	now := s.nowMS()
	v := viewer{d.UserID, d.DeviceID}
	for _, n := range ns {
		ev, err := s.db.Event(ctx, n.EventID)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		out = append(out, map[string]any{
			"actions": json.RawMessage(n.Actions), "event": toClient(ev, v, now, true),
			"read": n.Read, "room_id": n.RoomID, "ts": n.TS,
		})
	}
	resp := map[string]any{"notifications": out}
	if len(ns) == limit {
		resp["next_token"] = strconv.FormatInt(ns[len(ns)-1].Pos, 10)
	}
	return c.JSON(http.StatusOK, resp)
}
