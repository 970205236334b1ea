package sync

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// RoomStore is what the rooms stream reads.
type RoomStore interface {
	Timeline(ctx context.Context, roomID string, after, upto int64, limit int) ([]storage.Event, bool, error)
	Snapshot(ctx context.Context, id int64) (storage.StateMap, error)
	SnapshotAt(ctx context.Context, roomID string, pos int64) (int64, error)
	Events(ctx context.Context, ids []string) ([]storage.Event, error)
	Members(ctx context.Context, roomID, membership string) ([]string, error)
	CurrentState(ctx context.Context, roomID string) ([]storage.Event, error)
	Forgotten(ctx context.Context, userID, roomID string) (bool, error)
}

// roomsStream is the rooms section (spec: "GET /sync", rooms): for each
// joined room its timeline, the state before it and the summary; invites
// with their stripped state; rooms left or banned from in the window.
type roomsStream struct {
	store  RoomStore
	notes  Notifier
	vis    Visibility
	format Formatter
	gaps   Gaps
	sticky Sticky
}

func (s *roomsStream) ID() StreamID { return StreamRooms }

func (s *roomsStream) Latest(_ context.Context, committed int64) int64 { return committed }

func (s *roomsStream) Fill(ctx context.Context, req *Request, from, to int64) (int64, bool, error) {
	from = min(from, to) // a token from the future (a restored database) reads as now
	initial := req.Initial()
	news := false
	req.rooms = make([]roomSection, 0, len(req.Memberships))
	for _, m := range req.Memberships {
		if !req.Filter.WantsRoom(m.RoomID) || m.Pos > to {
			continue // filtered, or changed after this response's position: next time
		}
		changed := initial || m.Pos > from
		switch m.Membership {
		case spec.Join:
			fresh := changed || req.FullState
			jr, has, err := s.joined(ctx, req, m, from, to, fresh)
			if err != nil {
				return 0, false, err
			}
			req.rooms = append(req.rooms, roomSection{id: m.RoomID, jr: jr, fresh: fresh, has: has})
			if has || fresh {
				req.include(m.RoomID, jr)
				news = true
			}
		case spec.Invite:
			if !changed {
				continue
			}
			ir := &InvitedRoom{}
			evs, err := InviteState(ctx, s.store, m.RoomID)
			if err != nil {
				return 0, false, err
			}
			ir.InviteState.Events = evs
			req.Response.Rooms.Invite[m.RoomID] = ir
			news = true
		case spec.Leave, spec.Ban:
			if initial && !req.Filter.Room.IncludeLeave || !changed {
				continue
			}
			if forgotten, _ := s.store.Forgotten(ctx, req.UserID, m.RoomID); forgotten {
				continue
			}
			lr, err := s.left(ctx, req, m, from)
			if err != nil {
				return 0, false, err
			}
			req.Response.Rooms.Leave[m.RoomID] = lr
			news = true
		}
	}
	return to, news, nil
}

// prevBatch is a pagination token (the homeserver's "t<pos>").
func prevBatch(pos int64) string { return "t" + strconv.FormatInt(pos, 10) }

// joined builds one joined room's section; has reports whether it carries
// anything new.
func (s *roomsStream) joined(ctx context.Context, req *Request, m storage.RoomMembership, from, to int64, fresh bool) (*JoinedRoom, bool, error) {
	roomID := m.RoomID
	jr := NewJoinedRoom()
	after := from
	if fresh {
		after = 0
	}
	// Nothing was written to the room past the token.
	quiet := !fresh && from >= s.notes.LastFor(roomID)
	var evs []storage.Event
	var limited bool
	if !quiet {
		var err error
		if evs, limited, err = s.store.Timeline(ctx, roomID, after, to, req.Filter.TimelineLimit()); err != nil {
			return nil, false, err
		}
	}
	// A gap in the middle: the timeline starts after it and is limited,
	// its prev_batch leads into the gap.
	if len(evs) > 0 {
		cut, ok, err := s.gaps.CutAtGap(ctx, roomID, evs, after)
		if err != nil {
			return nil, false, err
		}
		if ok {
			evs, limited = cut, true
		}
	}
	// History visibility: everything since the user's current join is
	// theirs; older events are checked one by one.
	visible, err := s.vis.Visible(ctx, roomID, req.UserID, m.Pos, evs)
	if err != nil {
		return nil, false, err
	}
	tl := make([]storage.Event, 0, len(visible))
	for _, e := range visible {
		if req.Filter.Room.Timeline.Allows(e) {
			tl = append(tl, e)
		}
	}
	jr.Timeline.Events = s.format.ClientEvents(tl, req.UserID, req.DeviceID, req.NowMS)
	jr.Timeline.Limited = limited
	if !quiet && (limited || len(tl) < len(evs)) {
		// Sticky events (MSC4354) the timeline dropped.
		sticky, err := s.sticky.StickyEvents(ctx, roomID, req.UserID, req.DeviceID, after, to, req.NowMS, tl)
		if err != nil {
			return nil, false, err
		}
		if len(sticky) > 0 {
			jr.Sticky = &EventList{Events: sticky}
		}
	}
	has := len(evs) > 0
	if has {
		jr.Timeline.PrevBatch = prevBatch(evs[0].Pos)
	} else {
		jr.Timeline.PrevBatch = prevBatch(to + 1)
	}

	// State between since (or the room's start) and the timeline's start.
	if fresh || limited {
		var startSnap, endSnap int64
		if len(evs) > 0 {
			startSnap, endSnap = evs[0].SnapBefore, evs[len(evs)-1].SnapAfter
		} else if startSnap, err = s.store.SnapshotAt(ctx, roomID, to); err != nil {
			return nil, false, err
		}
		state, err := s.stateDelta(ctx, req, roomID, from, startSnap, endSnap, fresh, tl)
		if err != nil {
			return nil, false, err
		}
		jr.State.Events = s.format.ClientEvents(state, req.UserID, req.DeviceID, req.NowMS)
	}

	memberChange := false
	for _, e := range tl {
		memberChange = memberChange || e.Type == spec.MRoomMember
	}
	if fresh || memberChange {
		joined, err := s.store.Members(ctx, roomID, spec.Join)
		if err != nil {
			return nil, false, err
		}
		invited, err := s.store.Members(ctx, roomID, spec.Invite)
		if err != nil {
			return nil, false, err
		}
		jr.Summary["m.joined_member_count"] = len(joined)
		jr.Summary["m.invited_member_count"] = len(invited)
	}
	return jr, has, nil
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
func (s *roomsStream) stateDelta(ctx context.Context, req *Request, roomID string, sincePos, startSnap, endSnap int64, fresh bool, tl []storage.Event) ([]storage.Event, error) {
	target, err := s.store.Snapshot(ctx, startSnap)
	if err != nil {
		return nil, err
	}
	if endSnap != 0 && endSnap != startSnap {
		end, err := s.store.Snapshot(ctx, endSnap)
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
		snap, err := s.store.SnapshotAt(ctx, roomID, sincePos)
		if err != nil {
			return nil, err
		}
		if base, err = s.store.Snapshot(ctx, snap); err != nil {
			return nil, err
		}
	}
	inTimeline := make(map[string]bool, len(tl))
	senders := map[string]bool{req.UserID: true}
	for _, e := range tl {
		inTimeline[e.EventID] = true
		senders[e.Sender] = true
	}
	lazy := req.Filter.Room.State.LazyLoad
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
	evs, err := s.store.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := evs[:0]
	for _, e := range evs {
		if req.Filter.Room.State.Allows(e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// left builds a room the user left or was banned from in the window: the
// timeline up to their leave.
func (s *roomsStream) left(ctx context.Context, req *Request, m storage.RoomMembership, from int64) (*LeftRoom, error) {
	lr := &LeftRoom{Timeline: Timeline{Events: []any{}}, State: EventList{Events: []any{}}, AccountData: EventList{Events: []any{}}}
	evs, limited, err := s.store.Timeline(ctx, m.RoomID, from, m.Pos, req.Filter.TimelineLimit())
	if err != nil {
		return nil, err
	}
	visible, err := s.vis.Visible(ctx, m.RoomID, req.UserID, 0, evs)
	if err != nil {
		return nil, err
	}
	lr.Timeline.Events = s.format.ClientEvents(visible, req.UserID, req.DeviceID, req.NowMS)
	lr.Timeline.Limited = limited
	if len(evs) > 0 {
		lr.Timeline.PrevBatch = prevBatch(evs[0].Pos)
	}
	return lr, nil
}

// StrippedStateTypes are the state events an invitee sees (spec:
// "Stripped state").
var StrippedStateTypes = []string{spec.MRoomCreate, spec.MRoomJoinRules, spec.MRoomName, "m.room.avatar",
	spec.MRoomCanonicalAlias, "m.room.encryption", spec.MRoomTopic}

// InviteState returns the stripped state an invitee of roomID sees: what
// this server holds, completed by the invite_room_state a remote invite
// carried.
func InviteState(ctx context.Context, store interface {
	CurrentState(ctx context.Context, roomID string) ([]storage.Event, error)
}, roomID string) ([]StrippedEvent, error) {
	state, err := store.CurrentState(ctx, roomID)
	if err != nil {
		return nil, err
	}
	out := []StrippedEvent{}
	var remote []json.RawMessage
	for _, e := range state {
		keep := e.Type == spec.MRoomMember || slices.Contains(StrippedStateTypes, e.Type)
		if !keep || e.StateKey == nil {
			continue
		}
		if e.Type == spec.MRoomMember && membershipOf(e) != spec.Invite && membershipOf(e) != spec.Join {
			continue
		}
		out = append(out, StrippedEvent{Content: EventContent(e), Sender: e.Sender, StateKey: *e.StateKey, Type: e.Type})
		if e.Type == spec.MRoomMember && len(e.UnsignedExtra) > 0 {
			remote = append(remote, e.UnsignedExtra)
		}
	}
	// An invite from another server carries the room's stripped state,
	// which we have no other copy of (spec: Server-Server API, "PUT
	// /invite": invite_room_state). What we hold ourselves wins.
	for _, extra := range remote {
		var u struct {
			InviteRoomState []StrippedEvent `json:"invite_room_state"`
		}
		if json.Unmarshal(extra, &u) != nil {
			continue
		}
		for _, se := range u.InviteRoomState {
			if se.Type == "" || !slices.Contains(StrippedStateTypes, se.Type) && se.Type != spec.MRoomMember || len(se.Content) == 0 {
				continue
			}
			dup := false
			for _, have := range out {
				dup = dup || have.Type == se.Type && have.StateKey == se.StateKey
			}
			if !dup {
				out = append(out, se)
			}
		}
	}
	return out, nil
}

// EventContent returns a stored event's content.
func EventContent(e storage.Event) json.RawMessage {
	var f struct {
		Content json.RawMessage `json:"content"`
	}
	_ = json.Unmarshal(e.JSON, &f) // stored JSON was validated on the way in
	return f.Content
}

// membershipOf returns an m.room.member event's membership.
func membershipOf(e storage.Event) string {
	var c struct {
		Membership string `json:"membership"`
	}
	_ = json.Unmarshal(EventContent(e), &c)
	return c.Membership
}
