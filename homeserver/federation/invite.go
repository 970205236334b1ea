package federation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// strippedStateTypes are sent along with an invite (spec: Client-Server
// API, "Stripped state").
var inviteStateTypes = []string{spec.MRoomCreate, spec.MRoomJoinRules, spec.MRoomName, "m.room.avatar", spec.MRoomCanonicalAlias, "m.room.encryption", "m.room.topic"}

// InviteRemote invites a user of another server (spec: Server-Server API,
// "Inviting to a room"): the event is built on our frontier, signed by the
// invitee's server through PUT /v2/invite, then stored; the queue sends it
// to the room's other servers.
func (f *Service) InviteRemote(ctx context.Context, roomID, sender, target, reason string, isDirect bool) error {
	content := map[string]any{"membership": "invite"}
	if isDirect {
		content["is_direct"] = true
	}
	if reason != "" {
		content["reason"] = reason
	}
	b, _ := json.Marshal(content)
	var (
		pdu      gomatrixserverlib.PDU
		room     storage.Room
		ver      gomatrixserverlib.IRoomVersion
		stripped []gomatrixserverlib.InviteStrippedState
	)
	err := f.db.WriteTx(ctx, func(tx *storage.Tx) error {
		w, err := f.rooms.Open(ctx, tx, roomID)
		if err != nil {
			return err
		}
		key := target
		if pdu, err = w.Build(ctx, rooms.Event{Sender: sender, Type: spec.MRoomMember, StateKey: &key, Content: b}); err != nil {
			return err
		}
		room, ver = w.Room(), w.Version()
		add := func(typ, stateKey string) {
			if p, err := w.StateEvent(ctx, typ, stateKey); err == nil && p != nil {
				stripped = append(stripped, gomatrixserverlib.NewInviteStrippedState(p))
			}
		}
		for _, t := range inviteStateTypes {
			add(t, "")
		}
		add(spec.MRoomMember, sender)
		return nil
	})
	if err != nil {
		return err
	}
	req, err := fclient.NewInviteV2Request(pdu, stripped)
	if err != nil {
		return err
	}
	resp, err := f.client.SendInviteV2(ctx, f.origin(), spec.ServerName(rooms.ServerOf(target)), req)
	if err != nil {
		return f.remoteError(ctx, rooms.ServerOf(target), "invite", err)
	}
	cp, err := f.checkReceived(ctx, resp.Event, room, rooms.Pushed, true)
	if err != nil {
		return errForbidden("the invitee's server returned a bad invite: %v", err)
	}
	if cp.pdu.EventID() != pdu.EventID() {
		return errForbidden("the invitee's server changed the invite")
	}
	if err := verifyServerSignature(ctx, f.keyRing, rooms.ServerOf(target), cp.pdu, ver); err != nil {
		return errForbidden("the invite lacks the invitee's server signature: %v", err)
	}
	return f.db.WriteTx(ctx, func(tx *storage.Tx) error {
		return f.appendChecked(ctx, tx, cp)
	})
}

// verifyServerSignature checks that server signed the event (its
// redacted form, as event signatures are over).
func verifyServerSignature(ctx context.Context, v gomatrixserverlib.JSONVerifier, server string, pdu gomatrixserverlib.PDU, ver gomatrixserverlib.IRoomVersion) error {
	redacted, err := ver.RedactEventJSON(pdu.JSON())
	if err != nil {
		return err
	}
	res, err := v.VerifyJSONs(ctx, []gomatrixserverlib.VerifyJSONRequest{{
		ServerName: spec.ServerName(server), AtTS: pdu.OriginServerTS(), Message: redacted,
		ValidityCheckingFunc: gomatrixserverlib.StrictValiditySignatureCheck,
	}})
	if err != nil {
		return err
	}
	return res[0].Error
}

// invite serves PUT /_matrix/federation/v2/invite/{roomId}/{eventId}: an
// invite of one of our users, which we sign and keep so that the invitee
// sees it in /sync (spec: Server-Server API, "Inviting to a room").
func (f *Service) invite(c echo.Context) error {
	ctx := c.Request().Context()
	origin := fedOrigin(c)
	roomID, eventID := param(c, "roomId"), param(c, "eventId")
	var req struct {
		Event           json.RawMessage   `json:"event"`
		InviteRoomState []json.RawMessage `json:"invite_room_state"`
		RoomVersion     string            `json:"room_version"`
	}
	if err := json.Unmarshal(fedContent(c), &req); err != nil {
		return errBadJSON("%v", err)
	}
	if !rooms.SupportedVersions[req.RoomVersion] {
		return merr(http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION", "room version %q is not supported", req.RoomVersion).WithExtra("room_version", req.RoomVersion)
	}
	if err := f.rooms.CheckFormat(req.Event); err != nil {
		return err
	}
	cp, err := f.checkReceived(ctx, req.Event, storage.Room{RoomID: roomID, Version: req.RoomVersion}, rooms.Pushed, false)
	if err != nil {
		return errBadJSON("%v", err)
	}
	pdu := cp.pdu
	// Cheap checks first: a hostile peer should not make us fetch keys
	// from a server of its choice for an invite we refuse anyway.
	target := ""
	if pdu.StateKey() != nil {
		target = *pdu.StateKey()
	}
	if pdu.EventID() != eventID || pdu.Type() != spec.MRoomMember {
		return errBadJSON("not the membership event %s", eventID)
	}
	if m, _ := pdu.Membership(); m != "invite" {
		return errBadJSON("not an invite")
	}
	if rooms.ServerOf(string(pdu.SenderID())) != origin {
		return errForbidden("the inviter is not a user of %s", origin)
	}
	if !f.isLocalUser(target) {
		return errForbidden("%s is not a user of this server", target)
	}
	if _, err := f.db.UserByID(ctx, target); err != nil {
		// Spec: Server-Server API, "PUT /_matrix/federation/v2/invite":
		// 400 or 403, not 404 (an inviting server reads a 404 as "v2 not
		// served" and retries v1).
		return errForbidden("Unknown user %s", target)
	}
	stripped, err := f.checkStrippedState(req.InviteRoomState)
	if err != nil {
		return err
	}
	if err := verifyServerSignature(ctx, f.keyRing, origin, pdu, cp.ver); err != nil {
		return errForbidden("invite not signed by the inviter's server: %v", err)
	}
	signed := pdu.Sign(f.serverName, gomatrixserverlib.KeyID(f.keyID), f.signingKey)
	in, err := f.serverInRoom(ctx, roomID)
	if err != nil {
		return err
	}
	if !in {
		// We are not in the room: keep the invite (and the room's stripped
		// state in its unsigned) so the invitee's /sync shows it.
		if err := f.storeInviteStub(ctx, signed, req.RoomVersion, stripped); err != nil {
			return err
		}
		f.noteGap(ctx, roomID, signed.EventID())
	}
	return c.JSON(http.StatusOK, map[string]any{"event": json.RawMessage(signed.JSON())})
}

// maxStrippedState bounds invite_room_state: a room's stripped state is a
// handful of events (spec: Client-Server API, "Stripped state").
const maxStrippedState = 50

// checkStrippedState checks an invite's invite_room_state: at most
// maxStrippedState canonical JSON objects, each a stripped state event
// with string type, state_key and sender and an object content, each at
// most rooms.MaxEventBytes. It is shown to the invitee as the inviting server
// sent it, so a malformed entry refuses the invite rather than reaching
// clients.
func (f *Service) checkStrippedState(entries []json.RawMessage) ([]json.RawMessage, error) {
	if len(entries) > maxStrippedState {
		return nil, errTooLarge("at most %d invite_room_state events", maxStrippedState)
	}
	for i, e := range entries {
		if len(e) > rooms.MaxEventBytes {
			return nil, errTooLarge("invite_room_state event %d is larger than %d bytes", i, rooms.MaxEventBytes)
		}
		if err := f.checks.Canonical(e); err != nil {
			return nil, errBadJSON("invite_room_state event %d: %v", i, err)
		}
		if err := rooms.SameWhenReparsed(e); err != nil {
			return nil, errBadJSON("invite_room_state event %d: %v", i, err)
		}
		var ev struct {
			Type     *string         `json:"type"`
			StateKey *string         `json:"state_key"`
			Sender   *string         `json:"sender"`
			Content  json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(e, &ev); err != nil || ev.Type == nil || ev.StateKey == nil || ev.Sender == nil ||
			len(ev.Content) == 0 || ev.Content[0] != '{' {
			return nil, errBadJSON("invite_room_state event %d is not a stripped state event", i)
		}
	}
	return entries, nil
}

// storeInviteStub records an invite to a room this server is not in: the
// room row and the invite as its only current state.
func (f *Service) storeInviteStub(ctx context.Context, pdu gomatrixserverlib.PDU, version string, stripped []json.RawMessage) error {
	var extra json.RawMessage
	if len(stripped) > 0 {
		extra, _ = json.Marshal(map[string]any{"invite_room_state": stripped})
	}
	return f.db.WriteTx(ctx, func(tx *storage.Tx) error {
		return f.rooms.AppendOutOfBand(ctx, tx, pdu, version, extra)
	})
}

// queryDirectory serves GET /_matrix/federation/v1/query/directory.
func (f *Service) queryDirectory(c echo.Context) error {
	alias := c.QueryParam("room_alias")
	if !f.local.ValidAlias(alias) {
		return errNotFound("Room alias %s not found", alias)
	}
	roomID, _, err := f.db.Alias(c.Request().Context(), alias)
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("Room alias %s not found", alias)
	}
	if err != nil {
		return err
	}
	servers, err := f.roomServers(c.Request().Context(), roomID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"room_id": roomID, "servers": servers})
}

// QueryAlias asks the alias's server for its room and servers.
func (f *Service) QueryAlias(ctx context.Context, alias string) (string, []string, error) {
	server := alias[strings.IndexByte(alias, ':')+1:]
	res, err := f.client.LookupRoomAlias(ctx, f.origin(), spec.ServerName(server), alias)
	if err != nil {
		return "", nil, f.remoteError(ctx, server, "query/directory", err)
	}
	if _, rs, ok := cutRoomServer(res.RoomID); !strings.HasPrefix(res.RoomID, "!") || !ok || rs == "" {
		return "", nil, merr(http.StatusBadGateway, "M_UNKNOWN", "%s answered query/directory with no room ID", server)
	}
	servers := make([]string, 0, len(res.Servers))
	for _, s := range res.Servers {
		servers = append(servers, string(s))
	}
	return res.RoomID, servers, nil
}

// LeaveRemote rejects an invite to (or leaves) a room this server is not
// in, through make_leave/send_leave v2 at the inviter's or the room's
// server; the leave then replaces the invite in the local stub.
func (f *Service) LeaveRemote(ctx context.Context, roomID, userID string) error {
	var lastErr error
	for _, server := range f.JoinServers(ctx, roomID, userID, nil) {
		err := f.leaveVia(ctx, roomID, userID, server)
		if err == nil {
			return nil
		}
		f.log.Info("remote leave failed", "room_id", roomID, "via", server, "err", err)
		if lastErr == nil || !isRefusal(lastErr) {
			lastErr = err
		}
	}
	if lastErr == nil {
		lastErr = errNotFound("no server to leave %s through", roomID)
	}
	return lastErr
}

func (f *Service) leaveVia(ctx context.Context, roomID, userID, server string) error {
	ml, err := f.client.MakeLeave(ctx, f.origin(), spec.ServerName(server), roomID, userID)
	if err != nil {
		return f.remoteError(ctx, server, "make_leave", err)
	}
	ver, err := rooms.Version(string(ml.RoomVersion))
	if err != nil || !rooms.SupportedVersions[string(ml.RoomVersion)] {
		return merr(http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION", "room version %q is not supported by this server", plainText(string(ml.RoomVersion), 32))
	}
	proto := ml.LeaveEvent
	if proto.Type != spec.MRoomMember || proto.SenderID != userID || proto.StateKey == nil || *proto.StateKey != userID || proto.RoomID != roomID {
		return merr(http.StatusBadGateway, "M_UNKNOWN", "%s answered make_leave with a template for something else", server)
	}
	if err := proto.SetContent(map[string]string{"membership": "leave"}); err != nil {
		return err
	}
	proto.Version = ver
	leave, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(f.clock.Now(), f.origin(), gomatrixserverlib.KeyID(f.keyID), f.signingKey)
	if err != nil {
		return err
	}
	if err := f.client.SendLeave(ctx, f.origin(), spec.ServerName(server), leave); err != nil {
		return f.remoteError(ctx, server, "send_leave", err)
	}
	return f.db.WriteTx(ctx, func(tx *storage.Tx) error {
		return f.rooms.AppendOutOfBand(ctx, tx, leave, string(ml.RoomVersion), nil)
	})
}
