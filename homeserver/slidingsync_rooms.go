package homeserver

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	hsync "github.com/switchboard-chat/switchboard/homeserver/sync"
)

// ssBumpTypes are the event types that move a room up the list
// (MSC4186 bump_stamp; the set Synapse uses).
var ssBumpTypes = []string{spec.MRoomCreate, "m.room.message", "m.room.encrypted", "m.sticker", "m.call.invite",
	"m.poll.start", "m.beacon_info", "org.matrix.msc3381.poll.start", "org.matrix.msc3672.beacon_info"}

// ssRoomMeta is what list filters and sorting need of a room.
type ssRoomMeta struct {
	roomType  *string // the create event's content.type, nil if none
	encrypted bool
	bump      int64
}

// ssMeta caches room metadata and the user's m.direct and m.tag account
// data for a connection; upto is the position it is current at.
type ssMeta struct {
	upto   int64
	loaded bool
	rooms  map[string]*ssRoomMeta
	direct map[string]bool
	tags   map[string]map[string]bool
}

// ssRoomCache keeps every room's metadata server-wide, each entry valid
// up to the position it was read at: a room not written since is not
// read again, whichever connection asks (room types never change and
// encryption is never turned off; bump stamps move with writes, which
// the notifier reports).
type ssRoomCache struct {
	mu sync.Mutex // guards m
	m  map[string]ssCachedRoom
}

type ssCachedRoom struct {
	meta ssRoomMeta
	asOf int64
}

// refresh brings the cache up to upto: only rooms touched since, or new
// to it, are read again, so a long-lived connection's cost follows what
// changed rather than how many rooms the user is in.
func (m *ssMeta) refresh(ctx context.Context, s *Server, userID string, ms []storage.RoomMembership, upto int64) error {
	if m.rooms == nil {
		m.rooms, m.direct, m.tags = map[string]*ssRoomMeta{}, map[string]bool{}, map[string]map[string]bool{}
	}
	cache := &s.ssRooms
	var stale []string
	cache.mu.Lock()
	if cache.m == nil {
		cache.m = make(map[string]ssCachedRoom)
	}
	for _, r := range ms {
		c, ok := cache.m[r.RoomID]
		if !ok || s.notifier.LastFor(r.RoomID) > c.asOf || r.Pos > c.asOf {
			stale = append(stale, r.RoomID)
			continue
		}
		meta := c.meta
		m.rooms[r.RoomID] = &meta
	}
	cache.mu.Unlock()
	if len(stale) > 0 {
		state, err := s.db.RoomsState(ctx, stale, []string{spec.MRoomCreate, "m.room.encryption"})
		if err != nil {
			return err
		}
		bumps, err := s.db.BumpStamps(ctx, stale, ssBumpTypes)
		if err != nil {
			return err
		}
		fresh := make(map[string]*ssRoomMeta, len(stale))
		for _, id := range stale {
			fresh[id] = &ssRoomMeta{bump: bumps[id]}
		}
		for _, e := range state {
			rm := fresh[e.RoomID]
			switch e.Type {
			case spec.MRoomCreate:
				var c struct {
					Type *string `json:"type"`
				}
				_ = json.Unmarshal(contentOf(e), &c)
				rm.roomType = c.Type
			case "m.room.encryption":
				rm.encrypted = true
			}
		}
		cache.mu.Lock()
		for id, rm := range fresh {
			if c, ok := cache.m[id]; !ok || c.asOf < upto {
				cache.m[id] = ssCachedRoom{meta: *rm, asOf: upto}
			}
			m.rooms[id] = rm
		}
		cache.mu.Unlock()
	}
	for _, r := range ms {
		// A room we only know by an invite has no timeline here.
		if rm := m.rooms[r.RoomID]; rm.bump == 0 {
			rm.bump = r.Pos
		}
	}
	after := m.upto
	if !m.loaded {
		after = 0
	}
	if !m.loaded || s.notifier.LastFor(storage.KeyAccountData(userID)) > m.upto {
		ad, err := s.db.AccountDataBetween(ctx, userID, after, upto)
		if err != nil {
			return err
		}
		for _, a := range ad {
			switch {
			case a.RoomID == "" && a.Type == "m.direct":
				// {user ID: [room ID...]} (spec: "Direct Messaging").
				var direct map[string][]string
				_ = json.Unmarshal(a.Content, &direct)
				m.direct = map[string]bool{}
				for _, rooms := range direct {
					for _, r := range rooms {
						m.direct[r] = true
					}
				}
			case a.RoomID != "" && a.Type == "m.tag":
				var tags struct {
					Tags map[string]json.RawMessage `json:"tags"`
				}
				_ = json.Unmarshal(a.Content, &tags)
				set := map[string]bool{}
				for t := range tags.Tags {
					set[t] = true
				}
				m.tags[a.RoomID] = set
			}
		}
	}
	m.upto, m.loaded = upto, true
	return nil
}

// matches applies a list's filters to a room (MSC4186 "filters").
func (m *ssMeta) matches(f *ssFilters, r storage.RoomMembership, inviteDM bool) bool {
	rm := m.rooms[r.RoomID]
	if f.IsInvite != nil && *f.IsInvite != (r.Membership == "invite") {
		return false
	}
	if f.IsDM != nil && *f.IsDM != (m.direct[r.RoomID] || inviteDM) {
		return false
	}
	if f.IsEncrypted != nil && *f.IsEncrypted != rm.encrypted {
		return false
	}
	sameType := func(want *string) bool {
		return (want == nil && rm.roomType == nil) || (want != nil && rm.roomType != nil && *want == *rm.roomType)
	}
	if f.RoomTypes != nil && !slices.ContainsFunc(f.RoomTypes, sameType) {
		return false
	}
	if slices.ContainsFunc(f.NotRoomTypes, sameType) {
		return false
	}
	tags := m.tags[r.RoomID]
	if len(f.Tags) > 0 && !slices.ContainsFunc(f.Tags, func(t string) bool { return tags[t] }) {
		return false
	}
	return !slices.ContainsFunc(f.NotTags, func(t string) bool { return tags[t] })
}

// sortRooms orders rooms by bump_stamp, newest first (ties by room ID).
func (m *ssMeta) sortRooms(rooms []storage.RoomMembership) {
	sort.Slice(rooms, func(i, j int) bool {
		a, b := m.rooms[rooms[i].RoomID].bump, m.rooms[rooms[j].RoomID].bump
		if a != b {
			return a > b
		}
		return rooms[i].RoomID < rooms[j].RoomID
	})
}

// mergeConfig unites two configs for a room in several lists: the union
// of required_state and the larger timeline_limit.
func mergeConfig(a *ssRoomConfig, b ssRoomConfig) {
	for _, p := range b.RequiredState {
		if !slices.Contains(a.RequiredState, p) {
			a.RequiredState = append(a.RequiredState, p)
		}
	}
	a.TimelineLimit = max(a.TimelineLimit, b.TimelineLimit)
}

// signature is a config in a stable form, to notice changes.
func (rc ssRoomConfig) signature() string {
	rs := slices.Clone(rc.RequiredState)
	slices.SortFunc(rs, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
	b, _ := json.Marshal(ssRoomConfig{RequiredState: rs, TimelineLimit: rc.TimelineLimit})
	return string(b)
}

// wantsState reports whether required_state asks for a state event.
// "*" matches any type or state key; "$ME" is the user; "$LAZY" (for
// members) is the senders of the timeline sent with it (MSC4186,
// required_state).
func wantsState(rs [][2]string, e storage.Event, me string, lazy map[string]bool) bool {
	if e.StateKey == nil {
		return false
	}
	sk := *e.StateKey
	for _, p := range rs {
		if p[0] != "*" && p[0] != e.Type {
			continue
		}
		switch p[1] {
		case "*":
			return true
		case "$ME":
			if sk == me {
				return true
			}
		case "$LAZY":
			if e.Type == spec.MRoomMember && lazy[sk] {
				return true
			}
		default:
			if p[1] == sk {
				return true
			}
		}
	}
	return false
}

// ssHero is a member shown for a room without a name.
type ssHero struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// ssRoom is one room of the response (MSC4186 "rooms").
type ssRoom struct {
	Name              string                `json:"name,omitempty"`
	Avatar            string                `json:"avatar,omitempty"`
	Heroes            []ssHero              `json:"heroes,omitempty"`
	Initial           bool                  `json:"initial,omitempty"`
	IsDM              bool                  `json:"is_dm,omitempty"`
	Membership        string                `json:"membership,omitempty"`
	InviteState       []hsync.StrippedEvent `json:"invite_state,omitempty"`
	RequiredState     []clientEvent         `json:"required_state,omitempty"`
	Timeline          []clientEvent         `json:"timeline,omitempty"`
	PrevBatch         string                `json:"prev_batch,omitempty"`
	Limited           bool                  `json:"limited,omitempty"`
	NumLive           int                   `json:"num_live,omitempty"`
	BumpStamp         int64                 `json:"bump_stamp,omitempty"`
	JoinedCount       *int                  `json:"joined_count,omitempty"`
	InvitedCount      *int                  `json:"invited_count,omitempty"`
	NotificationCount int                   `json:"notification_count"`
	HighlightCount    int                   `json:"highlight_count"`
}

// ssRoomReq is one room to consider for the response.
type ssRoomReq struct {
	m       storage.RoomMembership
	config  ssRoomConfig
	since   int64 // 0: send from scratch
	now     int64
	upto    int64
	v       viewer
	isDM    bool
	meta    *ssRoomMeta
	initial bool
}

// buildRoom returns a room's entry, or nil when nothing is new for a
// room the connection already has.
func (s *Server) buildRoom(ctx context.Context, rr ssRoomReq) (*ssRoom, error) {
	room := &ssRoom{Initial: rr.initial, IsDM: rr.isDM, BumpStamp: rr.meta.bump}
	roomID := rr.m.RoomID
	if rr.m.Membership == "invite" {
		if !rr.initial {
			return nil, nil
		}
		invite, err := hsync.InviteState(ctx, s.db, roomID)
		if err != nil {
			return nil, err
		}
		room.Membership, room.InviteState = "invite", invite
		for _, e := range invite {
			s.nameFromStripped(room, e)
		}
		return room, nil
	}
	upto := rr.upto
	if rr.m.Membership != "join" {
		room.Membership = rr.m.Membership
		upto = min(upto, rr.m.Pos) // nothing after leaving
	}
	if !rr.initial && s.notifier.LastFor(roomID) <= rr.since && rr.m.Pos <= rr.since &&
		s.notifier.LastFor(storage.KeyNotifications(rr.v.UserID, roomID)) <= rr.since {
		return nil, nil
	}
	limit := rr.config.TimelineLimit
	var evs []storage.Event
	var limited bool
	if limit > 0 {
		var err error
		if evs, limited, err = s.db.Timeline(ctx, roomID, rr.since, upto, limit); err != nil {
			return nil, err
		}
	}
	// A gap in the middle and history visibility, as in /sync (gaps.go,
	// visibility.go).
	if cut, _, ok, err := s.cutAtGap(ctx, roomID, evs, rr.since); err != nil {
		return nil, err
	} else if ok {
		evs, limited = cut, true
	}
	vis := s.userVisibility(roomID, rr.v.UserID)
	if rr.m.Membership == "join" {
		vis.joinedSince = rr.m.Pos
	}
	visible, err := vis.filter(ctx, evs)
	if err != nil {
		return nil, err
	}
	room.Timeline = toClientList(visible, rr.v, rr.now, false)
	room.Limited = limited
	if len(evs) > 0 {
		room.PrevBatch = posToken(evs[0].Pos)
	}
	if !rr.initial {
		room.NumLive = len(visible)
	}
	lazy := map[string]bool{rr.v.UserID: true}
	for _, e := range visible {
		lazy[e.Sender] = true
	}
	var state []storage.Event
	if rr.initial || limited {
		cur, err := s.db.CurrentState(ctx, roomID)
		if rr.m.Membership == spec.Leave || rr.m.Membership == spec.Ban {
			// One who left sees the state as it was when they left.
			var me storage.Event
			if me, err = s.db.Event(ctx, rr.m.EventID); err == nil {
				cur, err = s.readableState(ctx, roomID, roomReader{membership: rr.m.Membership, member: me})
			}
		}
		if err != nil {
			return nil, err
		}
		state = cur
	} else {
		state = slices.DeleteFunc(slices.Clone(visible), func(e storage.Event) bool { return e.StateKey == nil })
	}
	memberChange := rr.initial
	for _, e := range state {
		if wantsState(rr.config.RequiredState, e, rr.v.UserID, lazy) {
			room.RequiredState = append(room.RequiredState, toClient(e, rr.v, rr.now, false))
		}
		memberChange = memberChange || e.Type == spec.MRoomMember
		s.nameFromState(room, e)
	}
	if rr.initial && room.Name == "" {
		s.heroes(room, state, rr.v.UserID)
	}
	if memberChange {
		joined, err := s.db.Members(ctx, roomID, "join")
		if err != nil {
			return nil, err
		}
		invited, err := s.db.Members(ctx, roomID, "invite")
		if err != nil {
			return nil, err
		}
		nj, ni := len(joined), len(invited)
		room.JoinedCount, room.InvitedCount = &nj, &ni
	}
	n, h, err := s.db.UnreadCounts(ctx, rr.v.UserID, roomID)
	if err != nil {
		return nil, err
	}
	room.NotificationCount, room.HighlightCount = n, h
	return room, nil
}

// nameFromState takes the room's name and avatar from state events.
func (s *Server) nameFromState(room *ssRoom, e storage.Event) {
	if e.StateKey == nil || *e.StateKey != "" {
		return
	}
	s.nameFromStripped(room, hsync.StrippedEvent{Type: e.Type, Content: contentOf(e)})
}

func (s *Server) nameFromStripped(room *ssRoom, e hsync.StrippedEvent) {
	var c struct {
		Name string `json:"name"`
		URL  string `json:"url"`
	}
	switch e.Type {
	case spec.MRoomName:
		_ = json.Unmarshal(e.Content, &c)
		room.Name = c.Name
	case "m.room.avatar":
		_ = json.Unmarshal(e.Content, &c)
		room.Avatar = c.URL
	}
}

// heroes lists up to five other joined or invited members (spec: room
// summary "m.heroes"), for clients to name an unnamed room.
func (s *Server) heroes(room *ssRoom, state []storage.Event, me string) {
	for _, e := range state {
		if e.Type != spec.MRoomMember || e.StateKey == nil || *e.StateKey == me {
			continue
		}
		if ms := membershipOfEvent(e); ms != "join" && ms != "invite" {
			continue
		}
		var c struct {
			DisplayName string `json:"displayname"`
			AvatarURL   string `json:"avatar_url"`
		}
		_ = json.Unmarshal(contentOf(e), &c)
		room.Heroes = append(room.Heroes, ssHero{UserID: *e.StateKey, DisplayName: c.DisplayName, AvatarURL: c.AvatarURL})
	}
	sort.Slice(room.Heroes, func(i, j int) bool { return room.Heroes[i].UserID < room.Heroes[j].UserID })
	if len(room.Heroes) > 5 {
		room.Heroes = room.Heroes[:5]
	}
}
