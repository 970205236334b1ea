package federation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// maxServedEvents bounds backfill and get_missing_events answers.
const maxServedEvents = 100

// originInRoom answers 403 unless a user of the requesting server is (or
// was invited to) the room: peers read only rooms they share with us.
func (f *Service) originInRoom(ctx context.Context, roomID, origin string) (gomatrixserverlib.IRoomVersion, error) {
	room, err := f.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errNotFound("Unknown room %s", roomID)
	}
	if err != nil {
		return nil, err
	}
	state, err := f.db.CurrentState(ctx, roomID)
	if err != nil {
		return nil, err
	}
	for _, e := range state {
		if e.Type == spec.MRoomMember && e.StateKey != nil && rooms.ServerOf(*e.StateKey) == origin {
			if m := membershipOfEvent(e); m == "join" || m == "invite" || m == "leave" {
				return rooms.Version(room.Version)
			}
		}
	}
	return nil, errForbidden("server %s is not in room %s", origin, roomID)
}

// roomEvent loads an event of roomID, 404 if it is unknown or elsewhere.
func (f *Service) roomEvent(ctx context.Context, roomID, eventID string) (storage.Event, error) {
	e, err := f.db.Event(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || err == nil && e.RoomID != roomID {
		return storage.Event{}, errNotFound("Unknown event %s", eventID)
	}
	return e, err
}

// getEvent serves GET /_matrix/federation/v1/event/{eventId}.
func (f *Service) getEvent(c echo.Context) error {
	ctx := c.Request().Context()
	e, err := f.db.Event(ctx, param(c, "eventId"))
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("Unknown event")
	}
	if err != nil {
		return err
	}
	ver, err := f.originInRoom(ctx, e.RoomID, fedOrigin(c))
	if err != nil {
		return err
	}
	pdus, err := f.serverSees(ctx, ver, e.RoomID, fedOrigin(c), []storage.Event{e})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, f.txnOf(pdus))
}

func (f *Service) txnOf(pdus []json.RawMessage) map[string]any {
	return map[string]any{"origin": f.serverName, "origin_server_ts": f.nowMS(), "pdus": pdus}
}

// stateAt serves GET /state/{roomId} and /state_ids/{roomId}: the state
// before event_id and its auth chain.
func (f *Service) stateAt(idsOnly bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		roomID := param(c, "roomId")
		ver, err := f.originInRoom(ctx, roomID, fedOrigin(c))
		if err != nil {
			return err
		}
		e, err := f.roomEvent(ctx, roomID, c.QueryParam("event_id"))
		if err != nil {
			return err
		}
		if e.SnapBefore == 0 {
			// An outlier we hold without the state at it.
			return errNotFound("The state at %s is not known here", e.EventID)
		}
		stateEvs, chainEvs, err := f.stateAndAuthChain(ctx, ver, e.SnapBefore, nil)
		if err != nil {
			return err
		}
		if idsOnly {
			return c.JSON(http.StatusOK, map[string]any{"pdu_ids": eventIDs(stateEvs), "auth_chain_ids": eventIDs(chainEvs)})
		}
		state, chain := pduJSONs(stateEvs), pduJSONs(chainEvs)
		// The state at an event a server may not see (visibility.go) is
		// served redacted: what the auth rules read survives redaction,
		// names, topics and the like do not. IDs alone say nothing more.
		if ok, err := f.local.Visibility(roomID, fedOrigin(c)).Visible(ctx, e); err != nil {
			return err
		} else if !ok {
			if state, err = redactAll(ver, state); err != nil {
				return err
			}
			if chain, err = redactAll(ver, chain); err != nil {
				return err
			}
		}
		return c.JSON(http.StatusOK, map[string]any{"pdus": state, "auth_chain": chain})
	}
}

// redactAll returns the redacted form of each PDU (spec: Client-Server
// API, "Redactions": the algorithm of the room version).
func redactAll(ver gomatrixserverlib.IRoomVersion, raws []json.RawMessage) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(raws))
	for _, r := range raws {
		red, err := ver.RedactEventJSON(r)
		if err != nil {
			return nil, err
		}
		out = append(out, red)
	}
	return out, nil
}

// eventAuth serves GET /event_auth/{roomId}/{eventId}.
func (f *Service) eventAuth(c echo.Context) error {
	ctx := c.Request().Context()
	roomID := param(c, "roomId")
	ver, err := f.originInRoom(ctx, roomID, fedOrigin(c))
	if err != nil {
		return err
	}
	e, err := f.roomEvent(ctx, roomID, param(c, "eventId"))
	if err != nil {
		return err
	}
	p, err := rooms.Parse(ver, e)
	if err != nil {
		return err
	}
	_, chain, err := f.stateAndAuthChain(ctx, ver, 0, p.AuthEventIDs())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"auth_chain": pduJSONs(chain)})
}

// walkBack collects events reachable backwards through prev_events from
// start (included when withStart), not past stop, deepest first, at most
// limit.
func (f *Service) walkBack(ctx context.Context, ver gomatrixserverlib.IRoomVersion, roomID string, start []string, stop map[string]bool, withStart bool, minDepth int64, limit int) ([]storage.Event, error) {
	seen := map[string]bool{}
	var out []storage.Event
	frontier := start
	first := true
	for len(frontier) > 0 && len(out) < limit {
		evs, err := f.db.Events(ctx, frontier)
		if err != nil {
			return nil, err
		}
		sort.Slice(evs, func(i, j int) bool { return evs[i].Depth > evs[j].Depth })
		frontier = nil
		for _, e := range evs {
			if e.RoomID != roomID || seen[e.EventID] {
				continue
			}
			seen[e.EventID] = true
			if !first || withStart {
				if e.Depth < minDepth || len(out) >= limit {
					continue
				}
				out = append(out, e)
			}
			p, err := rooms.Parse(ver, e)
			if err != nil {
				continue
			}
			for _, prev := range p.PrevEventIDs() {
				if !stop[prev] && !seen[prev] {
					frontier = append(frontier, prev)
				}
			}
		}
		first = false
	}
	return out, nil
}

// backfill serves GET /backfill/{roomId}?v=...&limit=.
func (f *Service) backfill(c echo.Context) error {
	ctx := c.Request().Context()
	roomID := param(c, "roomId")
	ver, err := f.originInRoom(ctx, roomID, fedOrigin(c))
	if err != nil {
		return err
	}
	limit, _ := strconv.Atoi(c.QueryParam("limit"))
	limit = min(max(limit, 1), maxServedEvents)
	evs, err := f.walkBack(ctx, ver, roomID, c.QueryParams()["v"], nil, true, 0, limit)
	if err != nil {
		return err
	}
	pdus, err := f.serverSees(ctx, ver, roomID, fedOrigin(c), evs)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, f.txnOf(pdus))
}

// getMissingEvents serves POST /get_missing_events/{roomId}: the events
// before latest_events back to earliest_events.
func (f *Service) getMissingEvents(c echo.Context) error {
	ctx := c.Request().Context()
	roomID := param(c, "roomId")
	ver, err := f.originInRoom(ctx, roomID, fedOrigin(c))
	if err != nil {
		return err
	}
	var req struct {
		Limit          int      `json:"limit"`
		MinDepth       int64    `json:"min_depth"`
		EarliestEvents []string `json:"earliest_events"`
		LatestEvents   []string `json:"latest_events"`
	}
	if err := json.Unmarshal(fedContent(c), &req); err != nil {
		return errBadJSON("%v", err)
	}
	if req.Limit <= 0 {
		req.Limit = 10
	}
	stop := map[string]bool{}
	for _, id := range req.EarliestEvents {
		stop[id] = true
	}
	evs, err := f.walkBack(ctx, ver, roomID, req.LatestEvents, stop, false, req.MinDepth, min(req.Limit, maxServedEvents))
	if err != nil {
		return err
	}
	slices.Reverse(evs)
	pdus, err := f.serverSees(ctx, ver, roomID, fedOrigin(c), evs)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"events": pdus})
}

// makeLeave serves GET /make_leave/{roomId}/{userId}.
func (f *Service) makeLeave(c echo.Context) error {
	ctx := c.Request().Context()
	roomID, userID := param(c, "roomId"), param(c, "userId")
	if rooms.ServerOf(userID) != fedOrigin(c) {
		return errForbidden("user %s is not of server %s", userID, fedOrigin(c))
	}
	room, err := f.db.Room(ctx, roomID)
	if err != nil {
		return errNotFound("Unknown room %s", roomID)
	}
	proto, err := f.membershipTemplate(ctx, roomID, userID, spec.Leave)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"event": proto, "room_version": room.Version})
}

// userDevices serves GET /user/devices/{userId}.
func (f *Service) userDevices(c echo.Context) error {
	ctx := c.Request().Context()
	userID := param(c, "userId")
	if !f.isLocalUser(userID) {
		return errInvalidParam("%s is not a user of this server", userID)
	}
	devs, err := f.db.Devices(ctx, userID)
	if err != nil {
		return err
	}
	keys, err := f.db.QueryDeviceKeys(ctx, userID, nil)
	if err != nil {
		return err
	}
	byID := map[string]json.RawMessage{}
	for _, k := range keys {
		byID[k.DeviceID] = k.Keys
	}
	out := []map[string]any{}
	for _, d := range devs {
		entry := map[string]any{"device_id": d.DeviceID}
		if d.DisplayName != "" {
			entry["device_display_name"] = d.DisplayName
		}
		if k, ok := byID[d.DeviceID]; ok {
			entry["keys"] = k
		}
		out = append(out, entry)
	}
	resp := map[string]any{"user_id": userID, "stream_id": f.positions.Position(), "devices": out}
	cross, err := f.db.CrossSigningKeys(ctx, userID)
	if err != nil {
		return err
	}
	if k, ok := cross[storage.CrossSigningMaster]; ok {
		resp["master_key"] = json.RawMessage(k)
	}
	if k, ok := cross[storage.CrossSigningSelfSigning]; ok {
		resp["self_signing_key"] = json.RawMessage(k)
	}
	return c.JSON(http.StatusOK, resp)
}

// userKeysQuery serves POST /user/keys/query for our users.
func (f *Service) userKeysQuery(c echo.Context) error {
	ctx := c.Request().Context()
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := json.Unmarshal(fedContent(c), &req); err != nil {
		return errBadJSON("%v", err)
	}
	devices := map[string]map[string]json.RawMessage{}
	masters, selfs := map[string]json.RawMessage{}, map[string]json.RawMessage{}
	for userID, ids := range req.DeviceKeys {
		if !f.isLocalUser(userID) {
			continue
		}
		keys, err := f.db.QueryDeviceKeys(ctx, userID, ids)
		if err != nil {
			return err
		}
		byDevice := map[string]json.RawMessage{}
		for _, k := range keys {
			if obj, err := k.WithUnsigned(); err == nil {
				byDevice[k.DeviceID] = obj
			}
		}
		devices[userID] = byDevice
		cross, err := f.db.CrossSigningKeys(ctx, userID)
		if err != nil {
			return err
		}
		if k, ok := cross[storage.CrossSigningMaster]; ok {
			masters[userID] = k
		}
		if k, ok := cross[storage.CrossSigningSelfSigning]; ok {
			selfs[userID] = k
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"device_keys": devices, "master_keys": masters, "self_signing_keys": selfs})
}

// userKeysClaim serves POST /user/keys/claim for our users.
func (f *Service) userKeysClaim(c echo.Context) error {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}
	if err := json.Unmarshal(fedContent(c), &req); err != nil {
		return errBadJSON("%v", err)
	}
	var claims []storage.KeyClaim
	for userID, devs := range req.OneTimeKeys {
		if !f.isLocalUser(userID) {
			continue
		}
		for dev, alg := range devs {
			claims = append(claims, storage.KeyClaim{UserID: userID, DeviceID: dev, Algorithm: alg})
		}
	}
	keys, err := f.db.ClaimKeys(c.Request().Context(), claims)
	if err != nil {
		return err
	}
	out := storage.ClaimedByDevice(keys)
	return c.JSON(http.StatusOK, map[string]any{"one_time_keys": out})
}

// openIDUserInfo serves GET /_matrix/federation/v1/openid/userinfo, which
// is authenticated by the OpenID token, not by X-Matrix.
func (f *Service) openIDUserInfo(c echo.Context) error {
	userID, err := f.local.OpenIDUserInfo(c.Request().Context(), c.QueryParam("access_token"))
	if err != nil || userID == "" {
		return errUnknownToken("Access token unknown or expired")
	}
	return c.JSON(http.StatusOK, map[string]string{"sub": userID})
}

// serverSees loads the server's view of events for the federation
// endpoints: an event it may not see is served redacted (content
// withheld, hashes and signatures still checkable, the DAG intact).
func (f *Service) serverSees(ctx context.Context, ver gomatrixserverlib.IRoomVersion, roomID, server string, evs []storage.Event) ([]json.RawMessage, error) {
	v := f.local.Visibility(roomID, server)
	out := make([]json.RawMessage, 0, len(evs))
	for _, e := range evs {
		ok, err := v.Visible(ctx, e)
		if err != nil {
			return nil, err
		}
		if ok || e.RedactedBy != "" {
			out = append(out, e.JSON)
			continue
		}
		red, err := ver.RedactEventJSON(e.JSON)
		if err != nil {
			return nil, err
		}
		out = append(out, red)
	}
	return out, nil
}
