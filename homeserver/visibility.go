package homeserver

import (
	"context"
	"encoding/json"
	"math"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// History visibility: the one rule that decides whether a reader may see
// a room event, used by every path that returns events (/sync, /messages,
// /context, /event, /state, /members, and the federation endpoints
// /backfill, /event, /get_missing_events, /state, /state_ids).
//
// Spec: Client-Server API, "History visibility" and its "Server
// behaviour". For an event E, with the room's m.room.history_visibility in
// the state before E and the reader's membership in that state:
//
//  1. world_readable: allow;
//  2. the reader's membership was join: allow;
//  3. shared, and the reader joined the room at any point after E: allow;
//  4. invited, and the reader's membership was invite: allow;
//  5. otherwise deny.
//
// An m.room.history_visibility event is also visible when the setting it
// makes would allow it (the spec: "before or after the event"). A user
// always sees their own membership events. With no setting the room is
// shared; a value this server does not know is read as joined (fail
// closed).
//
// A server is a reader on behalf of its users (the spec: servers see only
// what their users may see): its membership at E is the best of its
// users' (join over invite), and "joined after E" holds when any of its
// users did. Events a server may not see are served redacted (their
// content withheld, the DAG intact), as other servers do.
const (
	visWorldReadable = "world_readable"
	visShared        = "shared"
	visInvited       = "invited"
	visJoined        = "joined"
)

// allowedByVisibility is the spec's rule for one event.
func allowedByVisibility(hv, membership string, joinedAfter bool) bool {
	switch {
	case hv == visWorldReadable:
		return true
	case membership == spec.Join:
		return true
	case hv == visShared && joinedAfter:
		return true
	case hv == visInvited && membership == spec.Invite:
		return true
	}
	return false
}

// historyVisibilityOf reads an m.room.history_visibility event's setting.
func historyVisibilityOf(e storage.Event) string {
	var c struct {
		HV string `json:"history_visibility"`
	}
	_ = json.Unmarshal(contentOf(e), &c)
	switch c.HV {
	case visWorldReadable, visShared, visInvited, visJoined:
		return c.HV
	}
	return visJoined
}

// visibility answers "may this reader see this event" for one room and
// one reader, a local user or a server. It caches per state snapshot, so
// a page of events costs a few lookups. Not safe for concurrent use.
type visibility struct {
	s      *Server
	roomID string
	user   string // a local user, or ""
	server string // a server, or ""
	// joinedSince, when set, is the position of the user's current join:
	// every event from there on is visible (the fast path of /sync).
	joinedSince int64

	historyLoaded bool
	lastJoin      int64 // the reader's latest join position (MinInt64: never)
	currentHV     string
	snaps         map[int64]snapVisibility
}

// snapVisibility is what a state snapshot says about the reader.
type snapVisibility struct {
	hv         string
	membership string
}

// userVisibility is a local user's view of roomID.
func (s *Server) userVisibility(roomID, userID string) *visibility {
	return &visibility{s: s, roomID: roomID, user: userID, snaps: map[int64]snapVisibility{}}
}

// readerVisibility is the view of a user whose standing readerOf found:
// a joined user sees everything since their join without a lookup.
func (s *Server) readerVisibility(roomID, userID string, r roomReader) *visibility {
	v := s.userVisibility(roomID, userID)
	if r.membership == spec.Join {
		v.joinedSince = r.member.Pos
	}
	return v
}

// serverVisibility is a server's view of roomID.
func (s *Server) serverVisibility(roomID, server string) *visibility {
	return &visibility{s: s, roomID: roomID, server: server, snaps: map[int64]snapVisibility{}}
}

// reads reports whether a member event's state key is the reader.
func (v *visibility) reads(stateKey string) bool {
	if v.user != "" {
		return stateKey == v.user
	}
	return serverOf(stateKey) == v.server
}

// loadHistory reads the reader's membership history in the room.
func (v *visibility) loadHistory(ctx context.Context) error {
	if v.historyLoaded {
		return nil
	}
	evs, err := v.s.db.RoomMemberEvents(ctx, v.roomID, v.user)
	if err != nil {
		return err
	}
	v.lastJoin = math.MinInt64
	for _, e := range evs {
		if v.reads(*e.StateKey) && membershipOfEvent(e) == spec.Join {
			v.lastJoin = max(v.lastJoin, e.Pos)
		}
	}
	cur, err := v.s.db.CurrentStateEvent(ctx, v.roomID, spec.MRoomHistoryVisibility, "")
	switch {
	case err == nil:
		v.currentHV = historyVisibilityOf(cur)
	default:
		v.currentHV = visShared
	}
	v.historyLoaded = true
	return nil
}

// at reads the visibility setting and the reader's membership in a state
// snapshot.
func (v *visibility) at(ctx context.Context, snap int64) (snapVisibility, error) {
	if sv, ok := v.snaps[snap]; ok {
		return sv, nil
	}
	sv := snapVisibility{hv: visShared}
	if snap == 0 {
		// A backfilled event: the state at it is not known here. Read it
		// as no membership under the room's current setting, at most
		// shared (never world_readable on a guess).
		if v.currentHV != visWorldReadable {
			sv.hv = v.currentHV
		}
		v.snaps[snap] = sv
		return sv, nil
	}
	st, err := v.s.db.Snapshot(ctx, snap)
	if err != nil {
		return sv, err
	}
	var ids []string
	if id, ok := st[storage.StateKey{Type: spec.MRoomHistoryVisibility}]; ok {
		ids = append(ids, id)
	}
	for k, id := range st {
		if k.Type == spec.MRoomMember && v.reads(k.StateKey) {
			ids = append(ids, id)
		}
	}
	evs, err := v.s.db.Events(ctx, ids)
	if err != nil {
		return sv, err
	}
	for _, e := range evs {
		switch e.Type {
		case spec.MRoomHistoryVisibility:
			sv.hv = historyVisibilityOf(e)
		case spec.MRoomMember:
			switch m := membershipOfEvent(e); {
			case m == spec.Join:
				sv.membership = spec.Join
			case m == spec.Invite && sv.membership != spec.Join:
				sv.membership = spec.Invite
			}
		}
	}
	v.snaps[snap] = sv
	return sv, nil
}

// visible reports whether the reader may see e.
func (v *visibility) visible(ctx context.Context, e storage.Event) (bool, error) {
	if v.joinedSince != 0 && e.Pos >= v.joinedSince {
		return true, nil
	}
	if e.Type == spec.MRoomMember && e.StateKey != nil && v.reads(*e.StateKey) {
		return true, nil // one's own membership
	}
	if err := v.loadHistory(ctx); err != nil {
		return false, err
	}
	sv, err := v.at(ctx, e.SnapBefore)
	if err != nil {
		return false, err
	}
	joinedAfter := v.lastJoin > e.Pos
	if allowedByVisibility(sv.hv, sv.membership, joinedAfter) {
		return true, nil
	}
	if e.Type == spec.MRoomHistoryVisibility && e.StateKey != nil && *e.StateKey == "" {
		return allowedByVisibility(historyVisibilityOf(e), sv.membership, joinedAfter), nil
	}
	return false, nil
}

// filter keeps the events of evs the reader may see, in order.
func (v *visibility) filter(ctx context.Context, evs []storage.Event) ([]storage.Event, error) {
	out := make([]storage.Event, 0, len(evs))
	for _, e := range evs {
		ok, err := v.visible(ctx, e)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, e)
		}
	}
	return out, nil
}
