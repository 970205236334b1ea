package homeserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// maxToDevicePerSync bounds the to-device messages of one response; the
// rest follow in the next.
const maxToDevicePerSync = 100

// maxSyncTimeout caps the long-poll; clients ask for 30 s typically.
const maxSyncTimeout = 5 * time.Minute

// syncFilter is the part of a sync filter (spec: "Filtering") we apply.
type syncFilter struct {
	Room struct {
		Rooms        []string   `json:"rooms"`
		NotRooms     []string   `json:"not_rooms"`
		IncludeLeave bool       `json:"include_leave"`
		Timeline     roomFilter `json:"timeline"`
		State        roomFilter `json:"state"`
	} `json:"room"`
}

func (f *syncFilter) timelineLimit() int {
	if f.Room.Timeline.Limit > 0 {
		return min(f.Room.Timeline.Limit, 500)
	}
	return 10
}

func (f *syncFilter) wantsRoom(roomID string) bool {
	if f.Room.Rooms != nil && !matchAny(f.Room.Rooms, roomID) {
		return false
	}
	return !matchAny(f.Room.NotRooms, roomID)
}

// syncRequest is one /sync call's parameters.
type syncRequest struct {
	viewer
	since     *syncToken
	filter    syncFilter
	fullState bool
}

// sync implements GET /sync (spec: Client-Server API, "Syncing"): an
// initial sync without since, an incremental one with it, waiting up to
// timeout ms for something new.
func (s *Server) sync(c echo.Context) error {
	ctx := c.Request().Context()
	d := device(c)
	req := syncRequest{viewer: viewer{d.UserID, d.DeviceID}, fullState: c.QueryParam("full_state") == "true"}
	if tok := c.QueryParam("since"); tok != "" {
		t, ok := parseSyncToken(tok)
		if !ok {
			return errInvalidParam("invalid since token")
		}
		req.since = &t
	}
	var timeout time.Duration
	if t := c.QueryParam("timeout"); t != "" {
		ms, err := strconv.ParseInt(t, 10, 64)
		if err != nil || ms < 0 {
			return errInvalidParam("timeout must be a non-negative integer")
		}
		timeout = min(time.Duration(ms)*time.Millisecond, maxSyncTimeout)
	}
	if err := s.loadSyncFilter(ctx, d.UserID, c.QueryParam("filter"), &req.filter); err != nil {
		return err
	}
	if err := s.syncSetPresence(ctx, d.UserID, c.QueryParam("set_presence")); err != nil {
		return err
	}
	s.metrics.syncRequests.Inc()
	var timer <-chan time.Time
	if req.since != nil && timeout > 0 {
		t := s.cfg.Clock.NewTimer(timeout)
		defer t.Stop()
		timer = t.C()
	}
	for {
		// Listen before reading, so that a write landing in between still
		// wakes this request. The keys are the user and their rooms; a new
		// membership notifies the user's key too.
		ms, err := s.db.Memberships(ctx, req.UserID)
		if err != nil {
			return err
		}
		keys := make([]string, 0, len(ms)+1)
		keys = append(keys, req.UserID)
		for _, m := range ms {
			if m.Membership == "join" {
				keys = append(keys, m.RoomID)
			}
		}
		pos, woken, cancel := s.notifier.Listen(keys)
		resp, empty, err := s.buildSync(ctx, &req, pos, ms)
		if err != nil {
			cancel()
			return err
		}
		if !empty || timer == nil {
			cancel()
			return c.JSON(http.StatusOK, resp)
		}
		select {
		case <-woken:
		case <-timer:
			cancel()
			return c.JSON(http.StatusOK, resp)
		case <-s.shutdown:
			cancel()
			return c.JSON(http.StatusOK, resp)
		case <-ctx.Done():
			cancel()
			return ctx.Err()
		}
	}
}

// loadSyncFilter reads ?filter=: inline JSON or the ID of a stored filter.
func (s *Server) loadSyncFilter(ctx context.Context, userID, raw string, f *syncFilter) error {
	if raw == "" {
		return nil
	}
	body := []byte(raw)
	if !strings.HasPrefix(strings.TrimSpace(raw), "{") {
		stored, err := s.db.Filter(ctx, userID, raw)
		if errors.Is(err, storage.ErrNotFound) {
			return errNotFound("No filter %s", raw)
		}
		if err != nil {
			return err
		}
		body = stored
	}
	if err := json.Unmarshal(body, f); err != nil {
		return errBadJSON("filter: %v", err)
	}
	return nil
}

type syncResponse struct {
	NextBatch   string         `json:"next_batch"`
	Rooms       syncRooms      `json:"rooms"`
	AccountData eventList      `json:"account_data"`
	Presence    eventList      `json:"presence"`
	ToDevice    eventList      `json:"to_device"`
	DeviceLists *deviceLists   `json:"device_lists,omitempty"`
	OTKCounts   map[string]int `json:"device_one_time_keys_count"`
	Fallback    []string       `json:"device_unused_fallback_key_types"`
}

type eventList struct {
	Events []any `json:"events"`
}

type deviceLists struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

type syncRooms struct {
	Join   map[string]*joinedRoom  `json:"join"`
	Invite map[string]*invitedRoom `json:"invite"`
	Leave  map[string]*leftRoom    `json:"leave"`
}

type timeline struct {
	Events    []clientEvent `json:"events"`
	Limited   bool          `json:"limited"`
	PrevBatch string        `json:"prev_batch,omitempty"`
}

type joinedRoom struct {
	Timeline            timeline       `json:"timeline"`
	State               stateList      `json:"state"`
	Ephemeral           eventList      `json:"ephemeral"`
	AccountData         eventList      `json:"account_data"`
	Summary             map[string]any `json:"summary"`
	UnreadNotifications map[string]int `json:"unread_notifications"`
	// Sticky is MSC4354's section (rtc_sticky.go).
	Sticky *eventList `json:"msc4354_sticky,omitempty"`
}

type stateList struct {
	Events []clientEvent `json:"events"`
}

type invitedRoom struct {
	InviteState struct {
		Events []strippedEvent `json:"events"`
	} `json:"invite_state"`
}

type strippedEvent struct {
	Content  json.RawMessage `json:"content"`
	Sender   string          `json:"sender"`
	StateKey string          `json:"state_key"`
	Type     string          `json:"type"`
}

type leftRoom struct {
	Timeline    timeline  `json:"timeline"`
	State       stateList `json:"state"`
	AccountData eventList `json:"account_data"`
}

// buildSync assembles the response for positions up to upto, and reports
// whether it holds nothing new for an incremental sync.
func (s *Server) buildSync(ctx context.Context, req *syncRequest, upto int64, memberships []storage.RoomMembership) (*syncResponse, bool, error) {
	var since syncToken
	if req.since != nil {
		since = *req.since
		if since.pos > upto {
			// A token from the future (e.g. after a database restore):
			// treat it as now rather than wait forever.
			since.pos = upto
		}
	}
	initial := req.since == nil
	next := syncToken{pos: upto, typing: s.typing.Serial(), toDevice: since.toDevice, presence: s.presenceSerial(ctx)}
	resp := &syncResponse{
		Rooms:       syncRooms{Join: map[string]*joinedRoom{}, Invite: map[string]*invitedRoom{}, Leave: map[string]*leftRoom{}},
		AccountData: eventList{Events: []any{}},
		Presence:    eventList{Events: []any{}},
		ToDevice:    eventList{Events: []any{}},
		OTKCounts:   map[string]int{},
		Fallback:    []string{},
	}
	empty := true
	now := s.nowMS()

	for _, m := range memberships {
		if !req.filter.wantsRoom(m.RoomID) {
			continue
		}
		changed := initial || m.Pos > since.pos
		switch m.Membership {
		case "join":
			if m.Pos > upto {
				continue // joined after this response's position: next time
			}
			fresh := initial || changed || req.fullState
			jr, has, err := s.syncJoinedRoom(ctx, req, m, since, upto, fresh, now)
			if err != nil {
				return nil, false, err
			}
			if has || fresh {
				resp.Rooms.Join[m.RoomID] = jr
				empty = false
			}
		case "invite":
			if !changed || m.Pos > upto {
				continue
			}
			ir, err := s.syncInvitedRoom(ctx, m.RoomID)
			if err != nil {
				return nil, false, err
			}
			resp.Rooms.Invite[m.RoomID] = ir
			empty = false
		case "leave", "ban":
			if initial && !req.filter.Room.IncludeLeave || !changed || m.Pos > upto {
				continue
			}
			if forgotten, _ := s.db.Forgotten(ctx, req.UserID, m.RoomID); forgotten {
				continue
			}
			lr, err := s.syncLeftRoom(ctx, req, m, since, now)
			if err != nil {
				return nil, false, err
			}
			resp.Rooms.Leave[m.RoomID] = lr
			empty = false
		}
	}

	// Global account data.
	var ad []storage.AccountData
	if initial || since.pos < s.notifier.LastFor(keyAccountData(req.UserID)) {
		var err error
		if ad, err = s.db.AccountDataBetween(ctx, req.UserID, since.pos, upto); err != nil {
			return nil, false, err
		}
	}
	for _, a := range ad {
		ev := map[string]any{"type": a.Type, "content": json.RawMessage(a.Content)}
		if a.RoomID == "" {
			resp.AccountData.Events = append(resp.AccountData.Events, ev)
			empty = false
		} else if jr := resp.Rooms.Join[a.RoomID]; jr != nil {
			jr.AccountData.Events = append(jr.AccountData.Events, ev)
		} else if joinedTo(memberships, a.RoomID) && req.filter.wantsRoom(a.RoomID) {
			jr := newJoinedRoom()
			jr.AccountData.Events = append(jr.AccountData.Events, ev)
			resp.Rooms.Join[a.RoomID] = jr
			empty = false
		}
	}

	// Every user has push rules, stored or not: an initial sync carries
	// the defaults until the user changes one.
	if initial && !hasGlobal(ad, "m.push_rules") {
		rules, err := s.pushRulesContent(ctx, req.UserID)
		if err != nil {
			return nil, false, err
		}
		resp.AccountData.Events = append(resp.AccountData.Events, map[string]any{"type": "m.push_rules", "content": json.RawMessage(rules)})
	}

	// To-device: what the since token covers was received; drop it, then
	// deliver the rest (spec: "Send-to-Device messaging").
	// With nothing newer for this user than what the token covers, there
	// is nothing to fetch or acknowledge.
	if initial || since.toDevice < s.notifier.LastFor(keyToDevice(req.UserID)) {
		if since.toDevice > 0 {
			if err := s.db.AckToDevice(ctx, req.UserID, req.DeviceID, since.toDevice); err != nil {
				return nil, false, err
			}
		}
		msgs, err := s.db.ToDeviceUpTo(ctx, req.UserID, req.DeviceID, upto, maxToDevicePerSync)
		if err != nil {
			return nil, false, err
		}
		for _, m := range msgs {
			if m.Pos <= since.toDevice {
				continue
			}
			resp.ToDevice.Events = append(resp.ToDevice.Events, map[string]any{
				"sender": m.Sender, "type": m.Type, "content": json.RawMessage(m.Content)})
			next.toDevice = m.Pos
			empty = false
		}
		if len(msgs) < maxToDevicePerSync {
			// Everything up to upto is delivered (or acknowledged).
			next.toDevice = max(next.toDevice, upto)
		}
	}

	// Device lists of users we share rooms with (spec: "Tracking the
	// device list for a user").
	if !initial {
		dl, err := s.deviceListChanges(ctx, req.UserID, memberships, since.pos, upto)
		if err != nil {
			return nil, false, err
		}
		if len(dl.Changed) > 0 || len(dl.Left) > 0 {
			resp.DeviceLists = dl
			empty = false
		}
	}
	// Presence of the users sharing a room with us (spec: Client-Server
	// API, "Presence").
	if pe, err := s.syncPresence(ctx, req.UserID, since.presence); err != nil {
		return nil, false, err
	} else if len(pe) > 0 {
		resp.Presence.Events = pe
		empty = false
	}
	if err := s.keyCounts(ctx, req, resp); err != nil {
		return nil, false, err
	}
	resp.NextBatch = next.String()
	return resp, empty && !initial, nil
}

func hasGlobal(ad []storage.AccountData, evType string) bool {
	for _, a := range ad {
		if a.RoomID == "" && a.Type == evType {
			return true
		}
	}
	return false
}

func joinedTo(ms []storage.RoomMembership, roomID string) bool {
	for _, m := range ms {
		if m.RoomID == roomID {
			return m.Membership == "join"
		}
	}
	return false
}

func newJoinedRoom() *joinedRoom {
	return &joinedRoom{
		Timeline:            timeline{Events: []clientEvent{}},
		State:               stateList{Events: []clientEvent{}},
		Ephemeral:           eventList{Events: []any{}},
		AccountData:         eventList{Events: []any{}},
		Summary:             map[string]any{},
		UnreadNotifications: map[string]int{"notification_count": 0, "highlight_count": 0},
	}
}

// syncJoinedRoom builds one joined room's section; has reports whether it
// carries anything new.
func (s *Server) syncJoinedRoom(ctx context.Context, req *syncRequest, m storage.RoomMembership, since syncToken, upto int64, fresh bool, now int64) (*joinedRoom, bool, error) {
	roomID := m.RoomID
	jr := newJoinedRoom()
	has := false
	after := since.pos
	if fresh {
		after = 0
	}
	// Nothing was written to the room past the token: only typing can be new.
	quiet := !fresh && since.pos >= s.notifier.LastFor(roomID)
	var evs []storage.Event
	var limited bool
	if !quiet {
		var err error
		if evs, limited, err = s.db.Timeline(ctx, roomID, after, upto, req.filter.timelineLimit()); err != nil {
			return nil, false, err
		}
	}
	// A gap in the middle (gaps.go): the timeline starts after it and is
	// limited, its prev_batch leads into the gap.
	if cut, _, ok, err := s.cutAtGap(ctx, roomID, evs, after); err != nil {
		return nil, false, err
	} else if ok {
		evs, limited = cut, true
	}
	// History visibility (visibility.go): everything since the user's
	// current join is theirs; older events are checked one by one.
	vis := s.userVisibility(roomID, req.UserID)
	vis.joinedSince = m.Pos
	visible, err := vis.filter(ctx, evs)
	if err != nil {
		return nil, false, err
	}
	tl := make([]storage.Event, 0, len(visible))
	for _, e := range visible {
		if req.filter.Room.Timeline.allows(e) {
			tl = append(tl, e)
		}
	}
	jr.Timeline.Events = toClientList(tl, req.viewer, now, false)
	jr.Timeline.Limited = limited
	if !quiet && (limited || len(tl) < len(evs)) {
		if err := s.syncSticky(ctx, jr, req, roomID, after, upto, now, tl); err != nil {
			return nil, false, err
		}
	}
	if len(evs) > 0 {
		jr.Timeline.PrevBatch = posToken(evs[0].Pos)
		has = true
	} else {
		jr.Timeline.PrevBatch = posToken(upto + 1)
	}

	// State between since (or the room's start) and the timeline's start.
	if fresh || limited {
		var startSnap, endSnap int64
		var err error
		if len(evs) > 0 {
			startSnap, endSnap = evs[0].SnapBefore, evs[len(evs)-1].SnapAfter
		} else if startSnap, err = s.db.SnapshotAt(ctx, roomID, upto); err != nil {
			return nil, false, err
		}
		state, err := s.stateDelta(ctx, req, roomID, since.pos, startSnap, endSnap, fresh, tl)
		if err != nil {
			return nil, false, err
		}
		jr.State.Events = toClientList(state, req.viewer, now, false)
	}

	// Ephemeral: typing and receipts.
	if users, ok := s.typing.Typing(roomID, since.typing); ok || (fresh && len(users) > 0) {
		if users == nil {
			users = []string{}
		}
		jr.Ephemeral.Events = append(jr.Ephemeral.Events, map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": users}})
		has = true
	}
	var receipts []storage.Receipt
	if !quiet {
		var err error
		if receipts, err = s.db.ReceiptsBetween(ctx, roomID, after, upto); err != nil {
			return nil, false, err
		}
	}
	if len(receipts) > 0 {
		jr.Ephemeral.Events = append(jr.Ephemeral.Events, map[string]any{"type": "m.receipt", "content": receiptContent(receipts)})
		has = true
	}
	memberChange := false
	for _, e := range tl {
		memberChange = memberChange || e.Type == spec.MRoomMember
	}
	if fresh || memberChange {
		joined, err := s.db.Members(ctx, roomID, "join")
		if err != nil {
			return nil, false, err
		}
		invited, err := s.db.Members(ctx, roomID, "invite")
		if err != nil {
			return nil, false, err
		}
		jr.Summary["m.joined_member_count"] = len(joined)
		jr.Summary["m.invited_member_count"] = len(invited)
	}
	notified, err := s.syncUnread(ctx, req.UserID, roomID, since.pos, fresh, has, jr.UnreadNotifications)
	if err != nil {
		return nil, false, err
	}
	return jr, has || notified, nil
}

// stateDelta returns the state events a client needs before the timeline:
// the whole state at startSnap for a fresh room, else what changed between
// the since position and startSnap. With lazy-loading, member events are
// limited to the timeline's senders and the user (spec: "Lazy-loading room
// members").
//
// The state a client derives (this state, then the timeline's state
// events) must be the room's state at the timeline's end (endSnap, 0 if
// the timeline is empty). That fails where the room's state changed
// between two timeline events without an event of its own: a federated
// invite stub has no state before it, and the state the join brings
// arrives with the join. So for every key no timeline event sets, the
// state at the timeline's end is sent instead of the one at its start.
func (s *Server) stateDelta(ctx context.Context, req *syncRequest, roomID string, sincePos, startSnap, endSnap int64, fresh bool, tl []storage.Event) ([]storage.Event, error) {
	target, err := s.db.Snapshot(ctx, startSnap)
	if err != nil {
		return nil, err
	}
	if endSnap != 0 && endSnap != startSnap {
		end, err := s.db.Snapshot(ctx, endSnap)
		if err != nil {
			return nil, err
		}
		setByTimeline := make(map[storage.StateKey]bool)
		for _, e := range tl {
			if e.StateKey != nil {
				setByTimeline[storage.StateKey{Type: e.Type, StateKey: *e.StateKey}] = true
			}
		}
		merged := make(storage.StateMap, len(end))
		for k, id := range target {
			merged[k] = id
		}
		for k, id := range end {
			if !setByTimeline[k] {
				merged[k] = id
			}
		}
		target = merged
	}
	var base storage.StateMap
	if !fresh {
		snap, err := s.db.SnapshotAt(ctx, roomID, sincePos)
		if err != nil {
			return nil, err
		}
		if base, err = s.db.Snapshot(ctx, snap); err != nil {
			return nil, err
		}
	}
	inTimeline := make(map[string]bool, len(tl))
	senders := map[string]bool{req.UserID: true}
	for _, e := range tl {
		inTimeline[e.EventID] = true
		senders[e.Sender] = true
	}
	lazy := req.filter.Room.State.LazyLoad
	var ids []string
	for k, id := range target {
		if base[k] == id || inTimeline[id] {
			continue
		}
		if lazy && k.Type == spec.MRoomMember && !senders[k.StateKey] {
			continue
		}
		ids = append(ids, id)
	}
	evs, err := s.db.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := evs[:0]
	for _, e := range evs {
		if req.filter.Room.State.allows(e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// strippedStateTypes are the state events an invitee sees (spec:
// "Stripped state").
var strippedStateTypes = []string{spec.MRoomCreate, spec.MRoomJoinRules, spec.MRoomName, "m.room.avatar",
	spec.MRoomCanonicalAlias, "m.room.encryption", spec.MRoomTopic}

func (s *Server) syncInvitedRoom(ctx context.Context, roomID string) (*invitedRoom, error) {
	state, err := s.db.CurrentState(ctx, roomID)
	if err != nil {
		return nil, err
	}
	ir := &invitedRoom{}
	ir.InviteState.Events = []strippedEvent{}
	var remote []json.RawMessage
	for _, e := range state {
		keep := e.Type == spec.MRoomMember
		for _, t := range strippedStateTypes {
			keep = keep || e.Type == t
		}
		if !keep || e.StateKey == nil {
			continue
		}
		if e.Type == spec.MRoomMember && membershipOfEvent(e) != "invite" && membershipOfEvent(e) != "join" {
			continue
		}
		ir.InviteState.Events = append(ir.InviteState.Events, strippedEvent{
			Content: contentOf(e), Sender: e.Sender, StateKey: *e.StateKey, Type: e.Type})
		if e.Type == spec.MRoomMember && len(e.UnsignedExtra) > 0 {
			remote = append(remote, e.UnsignedExtra)
		}
	}
	// An invite from another server carries the room's stripped state,
	// which we have no other copy of (spec: Server-Server API, "PUT
	// /invite": invite_room_state). What we hold ourselves wins.
	for _, extra := range remote {
		var u struct {
			InviteRoomState []strippedEvent `json:"invite_room_state"`
		}
		if json.Unmarshal(extra, &u) != nil {
			continue
		}
		for _, se := range u.InviteRoomState {
			if se.Type == "" || !slices.Contains(strippedStateTypes, se.Type) && se.Type != spec.MRoomMember || len(se.Content) == 0 {
				continue
			}
			dup := false
			for _, have := range ir.InviteState.Events {
				dup = dup || have.Type == se.Type && have.StateKey == se.StateKey
			}
			if !dup {
				ir.InviteState.Events = append(ir.InviteState.Events, se)
			}
		}
	}
	return ir, nil
}

func (s *Server) syncLeftRoom(ctx context.Context, req *syncRequest, m storage.RoomMembership, since syncToken, now int64) (*leftRoom, error) {
	lr := &leftRoom{Timeline: timeline{Events: []clientEvent{}}, State: stateList{Events: []clientEvent{}}, AccountData: eventList{Events: []any{}}}
	evs, limited, err := s.db.Timeline(ctx, m.RoomID, since.pos, m.Pos, req.filter.timelineLimit())
	if err != nil {
		return nil, err
	}
	visible, err := s.userVisibility(m.RoomID, req.UserID).filter(ctx, evs)
	if err != nil {
		return nil, err
	}
	lr.Timeline.Events = toClientList(visible, req.viewer, now, false)
	lr.Timeline.Limited = limited
	if len(evs) > 0 {
		lr.Timeline.PrevBatch = posToken(evs[0].Pos)
	}
	return lr, nil
}

// receiptContent groups receipts as m.receipt content:
// {event_id: {receipt_type: {user_id: {ts, thread_id?}}}}.
func receiptContent(rs []storage.Receipt) map[string]any {
	out := map[string]any{}
	for _, r := range rs {
		byType, _ := out[r.EventID].(map[string]any)
		if byType == nil {
			byType = map[string]any{}
			out[r.EventID] = byType
		}
		byUser, _ := byType[r.Type].(map[string]any)
		if byUser == nil {
			byUser = map[string]any{}
			byType[r.Type] = byUser
		}
		entry := map[string]any{"ts": r.TS}
		if r.ThreadID != "" {
			entry["thread_id"] = r.ThreadID
		}
		byUser[r.UserID] = entry
	}
	return out
}

// deviceListChanges computes device_lists (spec: "Tracking the device
// list for a user"): changed holds users sharing a room with userID whose
// devices changed, and users who newly share a room with them; left holds
// users who no longer share any room.
func (s *Server) deviceListChanges(ctx context.Context, userID string, memberships []storage.RoomMembership, after, upto int64) (*deviceLists, error) {
	dl := &deviceLists{Changed: []string{}, Left: []string{}}
	// Rooms whose membership may have moved in the window: the ones we are
	// in, and the ones we left in it.
	var rooms []string
	stale := after < s.notifier.LastFor(keyDeviceLists)
	for _, m := range memberships {
		if m.Membership == "join" || m.Pos > after {
			rooms = append(rooms, m.RoomID)
			stale = stale || after < s.notifier.LastFor(keyMembers(m.RoomID))
		}
	}
	if !stale {
		return dl, nil
	}
	changed, err := s.db.DeviceListChangesBetween(ctx, after, upto)
	if err != nil {
		return nil, err
	}
	memberEvs, err := s.db.MemberEventsInRooms(ctx, rooms, after, upto)
	if err != nil {
		return nil, err
	}
	if len(changed) == 0 && len(memberEvs) == 0 {
		return dl, nil
	}
	shared, err := s.db.UsersSharingRooms(ctx, userID)
	if err != nil {
		return nil, err
	}
	sharedSet := make(map[string]bool, len(shared))
	for _, u := range shared {
		sharedSet[u] = true
	}
	inChanged, inLeft := map[string]bool{}, map[string]bool{}
	for _, u := range changed {
		if sharedSet[u] && u != userID && !inChanged[u] {
			inChanged[u] = true
			dl.Changed = append(dl.Changed, u)
		}
	}
	for _, e := range memberEvs {
		target := *e.StateKey
		switch membershipOfEvent(e) {
		case "join":
			if target == userID {
				// We joined: everyone in the room is new to us.
				members, err := s.db.Members(ctx, e.RoomID, "join")
				if err != nil {
					return nil, err
				}
				for _, u := range members {
					if u != userID && !inChanged[u] {
						inChanged[u] = true
						dl.Changed = append(dl.Changed, u)
					}
				}
			} else if sharedSet[target] && !inChanged[target] {
				inChanged[target] = true
				dl.Changed = append(dl.Changed, target)
			}
		case "leave", "ban":
			if target == userID {
				members, err := s.db.Members(ctx, e.RoomID, "join")
				if err != nil {
					return nil, err
				}
				for _, u := range members {
					if !sharedSet[u] && !inLeft[u] {
						inLeft[u] = true
						dl.Left = append(dl.Left, u)
					}
				}
			} else if !sharedSet[target] && !inLeft[target] {
				inLeft[target] = true
				dl.Left = append(dl.Left, target)
			}
		}
	}
	return dl, nil
}
