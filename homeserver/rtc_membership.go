package homeserver

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// callMemberTypes are the MatrixRTC membership state types whose state
// keys name their owner: Element Call writes
// org.matrix.msc3401.call.member with the key "_@user:server_DEVICE_m.call"
// (MSC4143; the leading "_" keeps the key clear of the room-version auth
// rule for keys starting with "@", which only MSC3757 room versions relax).
var callMemberTypes = map[string]bool{
	"org.matrix.msc3401.call.member": true,
	"m.call.member":                  true,
	"m.rtc.member":                   true,
}

// callMemberOwner returns the user ID a call-member state key belongs to:
// the key is "@user:server" or starts with "@user:server_" or
// "_@user:server_" (MSC3757, "Restricting who can overwrite a state
// event"; MSC3779 "Owned state events"). ok is false for keys naming no
// user (those are left to power levels alone).
func callMemberOwner(stateKey string) (owner string, ok bool) {
	k := strings.TrimPrefix(stateKey, "_")
	if !strings.HasPrefix(k, "@") {
		return "", false
	}
	// A server name holds no "_" (spec: "Server Name": a hostname, IP
	// literal and port), so the first "_" after the ":" ends the user ID.
	colon := strings.IndexByte(k, ':')
	if colon < 0 {
		return "", false
	}
	if i := strings.IndexByte(k[colon:], '_'); i >= 0 {
		k = k[:colon+i]
	}
	if _, err := spec.NewUserID(k, true); err != nil {
		return "", false
	}
	return k, true
}

// checkCallMemberKey refuses a call-member state event whose key belongs
// to another user, unless the sender's power level is above the owner's
// (MSC3757: the owner, or users with a higher power level, may overwrite
// it, so moderators can clear a stale membership). In room versions 10
// and 11 the auth rules alone would let any member overwrite "_@bob…";
// this server applies the MSC's rule to its own users' sends.
func (s *Server) checkCallMemberKey(ctx context.Context, roomID, sender, evType, stateKey string) error {
	if !callMemberTypes[evType] {
		return nil
	}
	owner, ok := callMemberOwner(stateKey)
	if !ok || owner == sender {
		return nil
	}
	pl, err := s.roomPowerLevels(ctx, roomID)
	if err != nil {
		return err
	}
	if pl.userLevel(sender) > pl.userLevel(owner) {
		return nil
	}
	return errForbidden("state key %q belongs to %s", stateKey, owner)
}

// powerLevels is the part of m.room.power_levels this file reads.
type powerLevels struct {
	Users        map[string]int64 `json:"users"`
	UsersDefault int64            `json:"users_default"`
}

func (p powerLevels) userLevel(user string) int64 {
	if l, ok := p.Users[user]; ok {
		return l
	}
	return p.UsersDefault
}

// roomPowerLevels reads the room's current power levels; a room without
// them gives everyone level 0 (spec: "m.room.power_levels"; the creator's
// level before them does not matter here).
func (s *Server) roomPowerLevels(ctx context.Context, roomID string) (powerLevels, error) {
	var pl powerLevels
	e, err := s.db.CurrentStateEvent(ctx, roomID, spec.MRoomPowerLevels, "")
	if errors.Is(err, storage.ErrNotFound) {
		return pl, nil
	}
	if err != nil {
		return pl, err
	}
	var ev struct {
		Content powerLevels `json:"content"`
	}
	if err := json.Unmarshal(e.JSON, &ev); err != nil {
		// Stored events passed the auth rules, which parse power levels;
		// string levels (allowed in old rooms) end up here: treat as 0.
		s.log.Debug("power levels unreadable", "room_id", roomID, "err", err)
		return powerLevels{}, nil
	}
	return ev.Content, nil
}
