package homeserver

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/switchboard-chat/switchboard/homeserver/push"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
	hsync "github.com/switchboard-chat/switchboard/homeserver/sync"
)

// ssResponse is the response body (MSC4186).
type ssResponse struct {
	Pos        string                `json:"pos"`
	TxnID      string                `json:"txn_id,omitempty"`
	Lists      map[string]ssListResp `json:"lists"`
	Rooms      map[string]*ssRoom    `json:"rooms"`
	Extensions map[string]any        `json:"extensions"`
}

type ssListResp struct {
	Count int `json:"count"`
}

// buildSlidingSync assembles a response up to upto; empty reports that
// it holds nothing new for a request with a pos.
func (s *Server) buildSlidingSync(ctx context.Context, conn *ssConn, req *ssRequest, v viewer, since *hsync.Token, upto int64, ms []storage.RoomMembership) (*ssResponse, bool, error) {
	conn.mu.Lock()
	defer conn.mu.Unlock()
	var sincePos, sinceTyping int64
	if since != nil {
		sincePos, sinceTyping = min(since.Get(hsync.StreamRooms), upto), since.Get(hsync.StreamTyping)
	}
	// The rooms lists draw from: joined and invited ones, and those left
	// since the last response (so the client learns of it).
	var cands []storage.RoomMembership
	for _, m := range ms {
		if m.Pos > upto {
			continue
		}
		if m.Membership == "join" || m.Membership == "invite" || (since != nil && m.Pos > sincePos) {
			cands = append(cands, m)
		}
	}
	if err := conn.meta.refresh(ctx, s, v.UserID, cands, upto); err != nil {
		return nil, false, err
	}
	inviteDM := map[string]bool{}
	for _, m := range cands {
		if m.Membership == "invite" {
			if e, err := s.db.Event(ctx, m.EventID); err == nil {
				var c struct {
					IsDirect bool `json:"is_direct"`
				}
				_ = json.Unmarshal(contentOf(e), &c)
				inviteDM[m.RoomID] = c.IsDirect
			}
		}
	}
	resp := &ssResponse{TxnID: req.TxnID, Lists: map[string]ssListResp{}, Rooms: map[string]*ssRoom{}, Extensions: map[string]any{}}
	window := map[string]*ssRoomConfig{}
	byID := map[string]storage.RoomMembership{}
	for _, m := range cands {
		byID[m.RoomID] = m
	}
	countsChanged := false
	for name, l := range req.Lists {
		var rooms []storage.RoomMembership
		for _, m := range cands {
			if conn.meta.matches(&l.Filters, m, inviteDM[m.RoomID]) {
				rooms = append(rooms, m)
			}
		}
		conn.meta.sortRooms(rooms)
		resp.Lists[name] = ssListResp{Count: len(rooms)}
		if c, ok := conn.counts[name]; !ok || c != len(rooms) {
			countsChanged = true
			conn.counts[name] = len(rooms)
		}
		for _, r := range l.Ranges {
			for i := r[0]; i <= r[1] && i < len(rooms); i++ {
				rc := window[rooms[i].RoomID]
				if rc == nil {
					rc = &ssRoomConfig{}
					window[rooms[i].RoomID] = rc
				}
				mergeConfig(rc, l.ssRoomConfig)
			}
		}
	}
	for id, sub := range req.RoomSubscriptions {
		if _, ok := byID[id]; !ok {
			continue // not a room the user is or was in
		}
		rc := window[id]
		if rc == nil {
			rc = &ssRoomConfig{}
			window[id] = rc
		}
		mergeConfig(rc, sub)
	}
	now := s.nowMS()
	initialRooms := false
	for id, rc := range window {
		m := byID[id]
		sig := rc.signature()
		prev, seen := conn.sent[id]
		known := seen && since != nil && prev.pos <= sincePos && prev.config == sig
		rr := ssRoomReq{m: m, config: *rc, now: now, upto: upto, v: v, meta: conn.meta.rooms[id],
			isDM: conn.meta.direct[id] || inviteDM[id], initial: !known}
		if known {
			rr.since = sincePos
		}
		room, err := s.buildRoom(ctx, rr)
		if err != nil {
			return nil, false, err
		}
		if room != nil {
			resp.Rooms[id] = room
			initialRooms = initialRooms || room.Initial
		}
		conn.sent[id] = ssSent{pos: upto, config: sig}
	}
	has, err := s.ssExtensions(ctx, req, v, since, sincePos, sinceTyping, upto, window, resp, ms, initialRooms)
	if err != nil {
		return nil, false, err
	}
	var pos hsync.Token
	for _, id := range []hsync.StreamID{hsync.StreamRooms, hsync.StreamAccountData, hsync.StreamReceipts, hsync.StreamDeviceLists, hsync.StreamUnread} {
		pos.Set(id, upto)
	}
	pos.Set(hsync.StreamTyping, s.eph.TypingPosition())
	resp.Pos = pos.String()
	empty := len(resp.Rooms) == 0 && !has && !countsChanged
	return resp, empty && since != nil, nil
}

// ssExtensions fills the requested extensions; has reports news.
func (s *Server) ssExtensions(ctx context.Context, req *ssRequest, v viewer, since *hsync.Token, sincePos, sinceTyping, upto int64,
	window map[string]*ssRoomConfig, resp *ssResponse, ms []storage.RoomMembership, initialRooms bool) (bool, error) {
	ext := req.Extensions
	has := false
	// to_device (MSC3885): its own since/next_batch; what since covers
	// was received and is dropped.
	if on(ext.ToDevice.Enabled) {
		var tdSince int64
		if ext.ToDevice.Since != "" {
			n, err := strconv.ParseInt(ext.ToDevice.Since, 10, 64)
			if err != nil || n < 0 {
				return false, errInvalidParam("to_device.since is not a token this server gave")
			}
			tdSince = n
		}
		limit := ext.ToDevice.Limit
		if limit <= 0 || limit > hsync.MaxToDevicePerSync {
			limit = hsync.MaxToDevicePerSync
		}
		events, next, err := hsync.ToDeviceBatch(ctx, s.db, s.notifier, v.UserID, v.DeviceID, tdSince, upto, limit, tdSince == 0)
		if err != nil {
			return false, err
		}
		has = has || len(events) > 0
		resp.Extensions["to_device"] = map[string]any{"next_batch": strconv.FormatInt(next, 10), "events": events}
	}
	// e2ee (MSC3884): device list changes, one-time and fallback keys.
	if on(ext.E2EE.Enabled) {
		counts, fallback, err := s.db.SyncKeyCounts(ctx, v.UserID, v.DeviceID)
		if err != nil {
			return false, err
		}
		if fallback == nil {
			fallback = []string{}
		}
		e2ee := map[string]any{"device_one_time_keys_count": counts, "device_unused_fallback_key_types": fallback}
		if since != nil {
			dl, err := hsync.DeviceListChanges(ctx, s.db, s.notifier, v.UserID, ms, sincePos, upto)
			if err != nil {
				return false, err
			}
			if len(dl.Changed) > 0 || len(dl.Left) > 0 {
				e2ee["device_lists"] = dl
				has = true
			}
		}
		resp.Extensions["e2ee"] = e2ee
	}
	// account_data (MSC3959): global, and of the rooms in the window.
	if on(ext.AccountData.Enabled) {
		global, rooms := []any{}, map[string][]any{}
		after := sincePos
		if since == nil || initialRooms {
			after = 0
		}
		if since == nil || initialRooms || sincePos < s.notifier.LastFor(storage.KeyAccountData(v.UserID)) {
			ad, err := s.db.AccountDataBetween(ctx, v.UserID, after, upto)
			if err != nil {
				return false, err
			}
			for _, a := range ad {
				ev := map[string]any{"type": a.Type, "content": json.RawMessage(a.Content)}
				if a.RoomID == "" && (since == nil || a.Pos > sincePos) {
					global = append(global, ev)
				} else if r := resp.Rooms[a.RoomID]; a.RoomID != "" && window[a.RoomID] != nil && (a.Pos > sincePos || (r != nil && r.Initial)) {
					rooms[a.RoomID] = append(rooms[a.RoomID], ev)
				}
			}
			if since == nil && !hsync.HasGlobal(ad, push.RulesType) {
				rules, err := push.Content(ctx, s.db, v.UserID)
				if err != nil {
					return false, err
				}
				global = append(global, map[string]any{"type": push.RulesType, "content": json.RawMessage(rules)})
			}
		}
		has = has || (since != nil && (len(global) > 0 || len(rooms) > 0))
		resp.Extensions["account_data"] = map[string]any{"global": global, "rooms": rooms}
	}
	// receipts (MSC3960) and typing (MSC3961) of the rooms in the window.
	if on(ext.Receipts.Enabled) {
		out := map[string]any{}
		for id := range window {
			after := sincePos
			if r := resp.Rooms[id]; r != nil && r.Initial {
				after = 0
			} else if s.notifier.LastFor(id) <= sincePos {
				continue
			}
			rs, err := s.db.ReceiptsBetween(ctx, id, after, upto)
			if err != nil {
				return false, err
			}
			if len(rs) > 0 {
				out[id] = map[string]any{"type": "m.receipt", "content": hsync.ReceiptContent(rs)}
				has = true
			}
		}
		resp.Extensions["receipts"] = map[string]any{"rooms": out}
	}
	if on(ext.Typing.Enabled) {
		out := map[string]any{}
		for id := range window {
			serial := sinceTyping
			if r := resp.Rooms[id]; r != nil && r.Initial {
				serial = 0
			}
			users, ok := s.eph.TypingSince(id, serial)
			if !ok || (serial == 0 && len(users) == 0) {
				continue
			}
			out[id] = map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": users}}
			has = true
		}
		resp.Extensions["typing"] = map[string]any{"rooms": out}
	}
	return has, nil
}
