package homeserver

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
	hsync "github.com/switchboard-chat/switchboard/homeserver/sync"
)

// clientSend is the common path of the endpoints that send an event:
// rate limit, canonical content, membership, then the event pipeline.
// ne.Sender and ne.Content are filled here.
func (s *Server) clientSend(c echo.Context, ne rooms.Event, mustBeJoined bool) error {
	d := device(c)
	if err := s.sendLimit.allow(d.UserID); err != nil {
		return err
	}
	content, err := readContent(c)
	if err != nil {
		return err
	}
	ne.Sender, ne.Content = d.UserID, content
	roomID := param(c, "roomId")
	if mustBeJoined {
		if err := s.requireJoined(c, roomID, d.UserID); err != nil {
			return err
		}
	}
	if ne.Type == spec.MRoomCanonicalAlias && ne.StateKey != nil && *ne.StateKey == "" {
		if err := s.checkCanonicalAlias(c.Request().Context(), roomID, content); err != nil {
			return err
		}
	}
	id, err := s.sendEventTx(c.Request().Context(), roomID, ne)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"event_id": id})
}

// sendEvent implements PUT /rooms/{roomId}/send/{eventType}/{txnId}.
func (s *Server) sendEvent(c echo.Context) error {
	evType := param(c, "type")
	if evType == "" || len(evType) > 255 {
		return errInvalidParam("invalid event type")
	}
	sticky, err := s.stickyQuery(c)
	if err != nil {
		return err
	}
	if delay, ok, err := s.delayQuery(c); ok || err != nil {
		if err != nil {
			return err
		}
		return s.scheduleDelayed(c, evType, nil, param(c, "txnId"), delay, sticky)
	}
	return s.clientSend(c, rooms.Event{Type: evType, Txn: &rooms.Txn{DeviceID: device(c).DeviceID, TxnID: param(c, "txnId")}, StickyMS: sticky}, true)
}

// putState implements PUT /rooms/{roomId}/state/{eventType}/{stateKey}.
// Membership changes go through the auth rules alone (one may join a
// public room by setting one's own member event).
func (s *Server) putState(c echo.Context) error {
	evType, key := param(c, "type"), param(c, "stateKey")
	if evType == "" || len(evType) > 255 || len(key) > 255 {
		return errInvalidParam("invalid event type or state key")
	}
	if evType == spec.MRoomCreate {
		return errForbidden("m.room.create cannot be sent")
	}
	// MatrixRTC memberships belong to the user in their state key
	// (rtc_membership.go), and may be delayed (MSC4140).
	if err := s.checkCallMemberKey(c.Request().Context(), param(c, "roomId"), device(c).UserID, evType, key); err != nil {
		return err
	}
	if delay, ok, err := s.delayQuery(c); ok || err != nil {
		if err != nil {
			return err
		}
		return s.scheduleDelayed(c, evType, &key, "", delay, 0)
	}
	return s.clientSend(c, rooms.Event{Type: evType, StateKey: &key}, evType != spec.MRoomMember)
}

// redactEvent implements PUT /rooms/{roomId}/redact/{eventId}/{txnId}.
func (s *Server) redactEvent(c echo.Context) error {
	return s.clientSend(c, rooms.Event{Type: spec.MRoomRedaction, Redacts: param(c, "eventId"),
		Txn: &rooms.Txn{DeviceID: device(c).DeviceID, TxnID: "redact:" + param(c, "txnId")}}, true)
}

func (s *Server) getState(c echo.Context) error {
	d := device(c)
	roomID := param(c, "roomId")
	r, err := s.readerOf(c.Request().Context(), roomID, d.UserID)
	if err != nil {
		return err
	}
	state, err := s.readableState(c.Request().Context(), roomID, r)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toClientList(state, viewer{d.UserID, d.DeviceID}, s.nowMS(), true))
}

func (s *Server) getStateEvent(c echo.Context) error {
	d := device(c)
	roomID := param(c, "roomId")
	r, err := s.readerOf(c.Request().Context(), roomID, d.UserID)
	if err != nil {
		return err
	}
	var e storage.Event
	if r.membership == spec.Join || r.worldReadable {
		if e, err = s.db.CurrentStateEvent(c.Request().Context(), roomID, param(c, "type"), param(c, "stateKey")); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
	} else {
		// One who left reads the state as it was when they left.
		state, err := s.readableState(c.Request().Context(), roomID, r)
		if err != nil {
			return err
		}
		for _, se := range state {
			if se.Type == param(c, "type") && se.StateKey != nil && *se.StateKey == param(c, "stateKey") {
				e = se
			}
		}
	}
	if e.EventID == "" {
		return errNotFound("Event not found")
	}
	if c.QueryParam("format") == "event" {
		return c.JSON(http.StatusOK, toClient(e, viewer{d.UserID, d.DeviceID}, s.nowMS(), true))
	}
	return c.JSONBlob(http.StatusOK, contentOf(e))
}

func (s *Server) getEvent(c echo.Context) error {
	d := device(c)
	roomID := param(c, "roomId")
	if _, err := s.readerOf(c.Request().Context(), roomID, d.UserID); err != nil {
		return err
	}
	e, err := s.visibleEvent(c.Request().Context(), roomID, d.UserID, param(c, "eventId"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toClient(e, viewer{d.UserID, d.DeviceID}, s.nowMS(), true))
}

// roomFilter is a RoomEventFilter (spec: "Filtering"); the sync package
// owns it, /messages and /context apply it too.
type roomFilter = hsync.RoomEventFilter

// parseFilterParam reads a ?filter= JSON RoomEventFilter.
func parseFilterParam(raw string) (*roomFilter, error) {
	if raw == "" {
		return nil, nil
	}
	var f roomFilter
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		return nil, errBadJSON("filter: %v", err)
	}
	return &f, nil
}

// parsePosToken reads a pagination or sync token into a boundary X such
// that backwards pagination returns events with pos < X and forwards
// pagination events with pos >= X. "t<X>" is ours; "s<P>_..." (a sync
// next_batch) means every event up to P was seen, so X = P+1.
func parsePosToken(tok string) (int64, bool) {
	switch {
	case strings.HasPrefix(tok, "t"):
		// Negative: backfilled history (storage.StoreBackfilled).
		n, err := strconv.ParseInt(tok[1:], 10, 64)
		return n, err == nil && n > math.MinInt64
	case strings.HasPrefix(tok, "s"):
		p, err := hsync.ParseToken(tok)
		if err != nil || p.Get(hsync.StreamRooms) == math.MaxInt64 {
			return 0, false
		}
		return p.Get(hsync.StreamRooms) + 1, true
	}
	return 0, false
}

func posToken(x int64) string { return "t" + strconv.FormatInt(x, 10) }

// messages implements GET /rooms/{roomId}/messages (spec: "Syncing",
// "GET /rooms/{roomId}/messages").
func (s *Server) messages(c echo.Context) error {
	ctx := c.Request().Context()
	d := device(c)
	roomID := param(c, "roomId")
	reader, err := s.readerOf(ctx, roomID, d.UserID)
	if err != nil {
		return err
	}
	backwards := c.QueryParam("dir") != "f"
	if dir := c.QueryParam("dir"); dir != "" && dir != "b" && dir != "f" {
		return errInvalidParam("dir must be b or f")
	}
	limit := 10
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return errInvalidParam("limit must be a non-negative integer")
		}
		limit = min(n, 1000)
	}
	filter, err := parseFilterParam(c.QueryParam("filter"))
	if err != nil {
		return err
	}
	if filter != nil && filter.Limit > 0 {
		limit = min(filter.Limit, 1000)
	}
	var from int64
	var inGap *gapCursor // a backwards token inside a timeline gap (gaps.go)
	if tok := c.QueryParam("from"); tok != "" {
		if gc, ok := parseGapToken(tok); ok && backwards {
			inGap, from = &gc, gc.pos
		} else if x, ok := parsePosToken(tok); ok {
			from = x
		} else {
			return errInvalidParam("invalid from token")
		}
	} else if backwards && (reader.membership == spec.Leave || reader.membership == spec.Ban) && !reader.worldReadable {
		// One who left reads up to their leave (visibility.go hides the rest).
		from = reader.member.Pos + 1
	} else if backwards {
		max, err := s.db.MaxPos(ctx)
		if err != nil {
			return err
		}
		from = max + 1
	}
	// Backfilled events sit below position 0, so no "to" is the lowest.
	var to int64
	if backwards {
		to = math.MinInt64
	}
	if tok := c.QueryParam("to"); tok != "" {
		x, ok := parsePosToken(tok)
		if !ok {
			return errInvalidParam("invalid to token")
		}
		to = x
		if backwards {
			to = x - 1 // events with pos > to-1, i.e. >= X
		}
	}
	// Backwards without "to" passes through the timeline's gaps, filling
	// them (gaps.go).
	withGaps := backwards && to == math.MinInt64
	start := gapCursor{pos: from}
	if inGap != nil {
		start = *inGap
	}
	var end gapCursor
	page := func() ([]storage.Event, error) {
		if withGaps {
			evs, next, err := s.pageBackwards(ctx, roomID, start, limit)
			end = next
			return evs, err
		}
		return s.db.Messages(ctx, roomID, from, backwards, to, limit)
	}
	evs, err := page()
	if err != nil {
		return err
	}
	if backwards && len(evs) < limit && to == math.MinInt64 {
		// The start of what we hold: the room may be older than our join
		// (spec: Server-Server API, "Backfilling"). Failures leave the
		// page as it is.
		if n, err := s.queries.Backfill(ctx, roomID, limit-len(evs)); err != nil {
			s.log.Info("backfill", "room_id", roomID, "err", err)
		} else if n > 0 {
			if evs, err = page(); err != nil {
				return err
			}
		}
	}
	visible, err := s.readerVisibility(roomID, d.UserID, reader).filter(ctx, evs)
	if err != nil {
		return err
	}
	chunk := make([]storage.Event, 0, len(visible))
	for _, e := range visible {
		if filter.Allows(e) {
			chunk = append(chunk, e)
		}
	}
	v := viewer{d.UserID, d.DeviceID}
	resp := map[string]any{
		"start": start.token(),
		"chunk": toClientList(chunk, v, s.nowMS(), true),
	}
	if len(evs) == limit && limit > 0 {
		last := evs[len(evs)-1]
		if withGaps {
			resp["end"] = end.token()
		} else if backwards {
			resp["end"] = posToken(last.Pos)
		} else {
			resp["end"] = posToken(last.Pos + 1)
		}
	}
	if filter != nil && filter.LazyLoad {
		members, err := s.lazyMembers(c, roomID, chunk)
		if err != nil {
			return err
		}
		resp["state"] = toClientList(members, v, s.nowMS(), true)
	}
	return c.JSON(http.StatusOK, resp)
}

// lazyMembers returns the current member events of the senders of evs
// (spec: "Lazy-loading room members").
func (s *Server) lazyMembers(c echo.Context, roomID string, evs []storage.Event) ([]storage.Event, error) {
	seen := map[string]bool{}
	var out []storage.Event
	for _, e := range evs {
		if seen[e.Sender] {
			continue
		}
		seen[e.Sender] = true
		m, err := s.db.CurrentStateEvent(c.Request().Context(), roomID, spec.MRoomMember, e.Sender)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// eventContext implements GET /rooms/{roomId}/context/{eventId}.
func (s *Server) eventContext(c echo.Context) error {
	ctx := c.Request().Context()
	d := device(c)
	roomID := param(c, "roomId")
	if _, err := s.readerOf(ctx, roomID, d.UserID); err != nil {
		return err
	}
	e, err := s.visibleEvent(ctx, roomID, d.UserID, param(c, "eventId"))
	if err != nil {
		return err
	}
	limit := 10
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return errInvalidParam("limit must be a non-negative integer")
		}
		limit = min(n, 100)
	}
	before, err := s.db.Messages(ctx, roomID, e.Pos, true, math.MinInt64, limit/2)
	if err != nil {
		return err
	}
	after, err := s.db.Messages(ctx, roomID, e.Pos+1, false, 0, limit-limit/2)
	if err != nil {
		return err
	}
	vis := s.userVisibility(roomID, d.UserID)
	if before, err = vis.filter(ctx, before); err != nil {
		return err
	}
	if after, err = vis.filter(ctx, after); err != nil {
		return err
	}
	snap, err := s.db.Snapshot(ctx, e.SnapAfter)
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(snap))
	for _, id := range snap {
		ids = append(ids, id)
	}
	state, err := s.db.Events(ctx, ids)
	if err != nil {
		return err
	}
	v := viewer{d.UserID, d.DeviceID}
	now := s.nowMS()
	start, end := posToken(e.Pos), posToken(e.Pos+1)
	if len(before) > 0 {
		start = posToken(before[len(before)-1].Pos)
	}
	if len(after) > 0 {
		end = posToken(after[len(after)-1].Pos + 1)
	}
	return c.JSON(http.StatusOK, map[string]any{
		"event":         toClient(e, v, now, true),
		"events_before": toClientList(before, v, now, true),
		"events_after":  toClientList(after, v, now, true),
		"state":         toClientList(state, v, now, true),
		"start":         start,
		"end":           end,
	})
}
