package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/matrixerr"
	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// serverInRoom reports whether a local user is joined to roomID.
func (f *Service) serverInRoom(ctx context.Context, roomID string) (bool, error) {
	members, err := f.db.JoinedMembers(ctx, roomID)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(members, f.isLocalUser), nil
}

// roomServers lists the servers of a room's joined members.
func (f *Service) roomServers(ctx context.Context, roomID string) ([]string, error) {
	members, err := f.db.JoinedMembers(ctx, roomID)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range members {
		if s := rooms.ServerOf(m); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// makeJoin serves GET /_matrix/federation/v1/make_join/{roomId}/{userId}
// (spec: Server-Server API, "Joining Rooms"): a join template on our
// frontier for a user of the requesting server.
func (f *Service) makeJoin(c echo.Context) error {
	ctx := c.Request().Context()
	roomID, userID := param(c, "roomId"), param(c, "userId")
	if rooms.ServerOf(userID) != fedOrigin(c) {
		return errForbidden("user %s is not of server %s", userID, fedOrigin(c))
	}
	room, err := f.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("Unknown room %s", roomID)
	}
	if err != nil {
		return err
	}
	if in, err := f.serverInRoom(ctx, roomID); err != nil {
		return err
	} else if !in {
		return errNotFound("This server is not in room %s", roomID)
	}
	if vers := c.QueryParams()["ver"]; !slices.Contains(vers, room.Version) {
		return merr(http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION", "room version %s is not in your supported versions", room.Version).WithExtra("room_version", room.Version)
	}
	proto, err := f.membershipTemplate(ctx, roomID, userID, spec.Join)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"event": proto, "room_version": room.Version})
}

// membershipTemplate is the make_join / make_leave answer: the unsigned
// m.room.member event (prev and auth events filled in) that userID's
// server signs and sends back, after checking that it would pass the auth
// rules now.
func (f *Service) membershipTemplate(ctx context.Context, roomID, userID, membership string) (*gomatrixserverlib.ProtoEvent, error) {
	content, _ := json.Marshal(map[string]string{"membership": membership})
	var proto *gomatrixserverlib.ProtoEvent
	err := f.db.WriteTx(ctx, func(tx *storage.Tx) error {
		w, err := f.rooms.Open(ctx, tx, roomID)
		if err != nil {
			return err
		}
		ev := rooms.Event{Sender: userID, Type: spec.MRoomMember, StateKey: &userID, Content: content}
		if _, err := w.Build(ctx, ev); err != nil {
			return err
		}
		proto, err = w.Template(ctx, ev)
		return err
	})
	return proto, err
}

// checkMembershipPDU checks a membership event sent by a server about its
// own user: the path's event ID, membership, state_key == sender, and the
// sender belongs to origin.
func checkMembershipPDU(pdu gomatrixserverlib.PDU, eventID, membership, origin string) error {
	if pdu.EventID() != eventID {
		return errBadJSON("event ID %s does not match the path", pdu.EventID())
	}
	if pdu.Type() != spec.MRoomMember || pdu.StateKey() == nil || *pdu.StateKey() != string(pdu.SenderID()) {
		return errBadJSON("not a membership event of its sender")
	}
	if m, _ := pdu.Membership(); m != membership {
		return errBadJSON("membership is %q, not %q", m, membership)
	}
	if rooms.ServerOf(string(pdu.SenderID())) != origin {
		return errForbidden("sender is not a user of %s", origin)
	}
	return nil
}

// sendJoin serves PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}:
// the signed join is checked and stored, relayed to the room's other
// servers, and answered with the state before it and its auth chain.
func (f *Service) sendJoin(c echo.Context) error {
	return f.sendMembership(c, "join")
}

// sendLeave serves PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}.
func (f *Service) sendLeave(c echo.Context) error {
	return f.sendMembership(c, "leave")
}

func (f *Service) sendMembership(c echo.Context, membership string) error {
	ctx := c.Request().Context()
	roomID, eventID, origin := param(c, "roomId"), param(c, "eventId"), fedOrigin(c)
	cp, err := f.checkPDU(ctx, fedContent(c), roomID)
	if err != nil {
		return errBadJSON("%v", err)
	}
	if err := checkMembershipPDU(cp.pdu, eventID, membership, origin); err != nil {
		return err
	}
	if err := f.storeChecked(ctx, cp); err != nil {
		if errors.Is(err, ErrBadPDU) {
			return errForbidden("%v", err)
		}
		return err
	}
	if v, err := f.db.EventVerdict(ctx, eventID); err == nil {
		return errForbidden("the %s is not allowed by the room's current state: %s", membership, v.Reason)
	}
	// Relay to the other servers in the room: the joining server only
	// knows us (spec: "the resident server ... sends the event to the
	// other servers").
	servers, err := f.roomServers(ctx, roomID)
	if err != nil {
		return err
	}
	var dests []string
	for _, s := range servers {
		if s != origin && s != f.serverName {
			dests = append(dests, s)
		}
	}
	if err := f.queue.enqueuePDU(ctx, dests, cp.pdu.JSON()); err != nil {
		return err
	}
	if membership == "leave" {
		return c.JSON(http.StatusOK, struct{}{})
	}
	f.sendRoomPresence(ctx, roomID, []string{origin})
	ev, err := f.db.Event(ctx, eventID)
	if err != nil {
		return err
	}
	state, chain, err := f.stateAndAuthChain(ctx, cp.ver, ev.SnapBefore, cp.pdu.AuthEventIDs())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{
		"origin": f.serverName, "state": pduJSONs(state), "auth_chain": pduJSONs(chain), "event": json.RawMessage(cp.pdu.JSON()), "members_omitted": false,
	})
}

// stateAndAuthChain returns the events of a snapshot and the auth chain of
// those events and of extraAuth.
func (f *Service) stateAndAuthChain(ctx context.Context, ver gomatrixserverlib.IRoomVersion, snap int64, extraAuth []string) ([]storage.Event, []storage.Event, error) {
	st, err := f.db.Snapshot(ctx, snap)
	if err != nil {
		return nil, nil, err
	}
	ids := make([]string, 0, len(st))
	for _, id := range st {
		ids = append(ids, id)
	}
	state, err := f.db.Events(ctx, ids)
	if err != nil {
		return nil, nil, err
	}
	authOf := func(evs []storage.Event) ([]string, error) {
		var out []string
		for _, e := range evs {
			p, err := rooms.Parse(ver, e)
			if err != nil {
				return nil, err
			}
			out = append(out, p.AuthEventIDs()...)
		}
		return out, nil
	}
	frontier, err := authOf(state)
	if err != nil {
		return nil, nil, err
	}
	frontier = append(frontier, extraAuth...)
	seen := map[string]bool{}
	chain := []storage.Event{}
	for len(frontier) > 0 {
		var next []string
		for _, id := range frontier {
			if !seen[id] {
				seen[id] = true
				next = append(next, id)
			}
		}
		evs, err := f.db.Events(ctx, next)
		if err != nil {
			return nil, nil, err
		}
		chain = append(chain, evs...)
		if frontier, err = authOf(evs); err != nil {
			return nil, nil, err
		}
	}
	return state, chain, nil
}

// pduJSONs is the PDU JSON of stored events.
func pduJSONs(evs []storage.Event) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.JSON)
	}
	return out
}

// eventIDs is the event IDs of stored events.
func eventIDs(evs []storage.Event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.EventID)
	}
	return out
}

// NeedsRemoteJoin reports whether joining roomID must go through another
// server: we do not know the room, or no local user is in it.
func (f *Service) NeedsRemoteJoin(ctx context.Context, roomID string) (bool, error) {
	if _, err := f.db.Room(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
		_, server, _ := cutRoomServer(roomID)
		return server != f.serverName, nil
	} else if err != nil {
		return false, err
	}
	in, err := f.serverInRoom(ctx, roomID)
	return !in, err
}

// cutRoomServer splits "!opaque:server".
func cutRoomServer(roomID string) (string, string, bool) {
	for i := 0; i < len(roomID); i++ {
		if roomID[i] == ':' {
			return roomID[:i], roomID[i+1:], true
		}
	}
	return roomID, "", false
}

// JoinServers lists where to try a remote join: the servers the client
// named, the server of the room ID, and the server that invited userID.
func (f *Service) JoinServers(ctx context.Context, roomID, userID string, named []string) []string {
	var out []string
	add := func(s string) {
		if s != "" && s != f.serverName && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, s := range named {
		add(s)
	}
	if e, err := f.db.CurrentStateEvent(ctx, roomID, spec.MRoomMember, userID); err == nil {
		add(rooms.ServerOf(e.Sender))
	}
	_, server, _ := cutRoomServer(roomID)
	add(server)
	return out
}

// JoinRemote joins userID to roomID through one of servers (spec:
// Server-Server API, "Joining Rooms": make_join, sign, send_join), checks
// the returned state and stores it with the join event.
func (f *Service) JoinRemote(ctx context.Context, roomID, userID string, servers []string) error {
	if len(servers) == 0 {
		return errNotFound("No server to join room %s through", roomID)
	}
	var lastErr error
	for _, server := range servers {
		err := f.joinVia(ctx, roomID, userID, server)
		if err == nil {
			// A rejoin: what was said while we were away is a gap (gaps.go).
			if join, err := f.db.CurrentStateEvent(ctx, roomID, spec.MRoomMember, userID); err == nil {
				f.noteGap(ctx, roomID, join.EventID)
			}
			f.replayLatePresence(ctx, roomID)
			if servers, err := f.roomServers(ctx, roomID); err == nil {
				f.sendRoomPresence(ctx, roomID, slices.DeleteFunc(servers, func(s string) bool { return s == f.serverName }))
			}
			return nil
		}
		if errors.Is(err, ErrBadPDU) || errors.Is(err, ErrFederation) {
			err = f.remoteError(ctx, server, "send_join", err)
		}
		f.log.Info("remote join failed", "room_id", roomID, "via", server, "err", err)
		var me *matrixerr.Error
		if errors.As(err, &me) && me.Status == http.StatusForbidden {
			return me
		}
		// A server's refusal says more than another's silence.
		if lastErr == nil || !isRefusal(lastErr) {
			lastErr = err
		}
	}
	return lastErr
}

func (f *Service) joinVia(ctx context.Context, roomID, userID, server string) error {
	mj, err := f.makeJoinRequest(ctx, server, roomID, userID)
	if err != nil {
		return f.remoteError(ctx, server, "make_join", err)
	}
	if !rooms.SupportedVersions[string(mj.RoomVersion)] {
		// Spec: Client-Server API, "Other error codes": M_INCOMPATIBLE_ROOM_VERSION
		// when joining a room whose version this server does not support.
		return merr(http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION", "room version %q is not supported by this server", plainText(string(mj.RoomVersion), 32)).WithExtra("room_version", plainText(string(mj.RoomVersion), 32))
	}
	ver, err := rooms.Version(string(mj.RoomVersion))
	if err != nil {
		return err
	}
	proto := mj.JoinEvent
	if proto.Type != spec.MRoomMember || proto.SenderID != userID || proto.StateKey == nil || *proto.StateKey != userID || proto.RoomID != roomID {
		return fmt.Errorf("%w: make_join returned a template for something else", ErrFederation)
	}
	content := map[string]any{"membership": "join"}
	for k, v := range f.local.Profile(ctx, userID) {
		content[k] = v
	}
	if err := proto.SetContent(content); err != nil {
		return err
	}
	proto.Version = ver
	join, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(f.clock.Now(), f.origin(), gomatrixserverlib.KeyID(f.keyID), f.signingKey)
	if err != nil {
		return err
	}
	resp, err := f.client.SendJoin(ctx, f.origin(), spec.ServerName(server), join)
	if err != nil {
		return f.remoteError(ctx, server, "send_join", err)
	}
	// Every state and auth event is signed and allowed by its auth events,
	// and the join is allowed by the state (spec: "send_join" response).
	noFetch := func(gomatrixserverlib.RoomVersion, []string) ([]gomatrixserverlib.PDU, error) { return nil, nil }
	if _, err := gomatrixserverlib.CheckSendJoinResponse(ctx, mj.RoomVersion, &resp, f.keyRing, join, noFetch, rooms.UserIDForSender); err != nil {
		return fmt.Errorf("%w: send_join response: %v", ErrBadPDU, err)
	}
	state, err := f.checkEvents(ctx, ver, roomID, resp.StateEvents)
	if err != nil {
		return err
	}
	chain, err := f.checkEvents(ctx, ver, roomID, resp.AuthEvents)
	if err != nil {
		return err
	}
	return pduRefusal(f.db.WriteTx(ctx, func(tx *storage.Tx) error {
		return f.rooms.AppendJoin(ctx, tx, string(mj.RoomVersion), join, state, chain)
	}))
}

// checkEvents parses and checks events received in bulk (send_join state
// and auth chain): size, canonical JSON, room, hash and signatures.
func (f *Service) checkEvents(ctx context.Context, ver gomatrixserverlib.IRoomVersion, roomID string, raws gomatrixserverlib.EventJSONs) ([]gomatrixserverlib.PDU, error) {
	room := storage.Room{RoomID: roomID, Version: string(ver.Version())}
	out := make([]gomatrixserverlib.PDU, 0, len(raws))
	for _, raw := range raws {
		if err := f.rooms.CheckFormat(raw); err != nil {
			return nil, pduRefusal(err)
		}
		cp, err := f.checkReceived(ctx, raw, room, rooms.Pushed, true)
		if err != nil {
			return nil, err
		}
		out = append(out, cp.pdu)
	}
	return out, nil
}
