package homeserver

import (
	"context"
	"errors"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
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
	pl, err := rooms.CurrentPowerLevels(ctx, s.db, roomID)
	if errors.Is(err, rooms.ErrNotFound) {
		return errForbidden("state key %q belongs to %s", stateKey, owner)
	}
	if err != nil {
		return err
	}
	if pl.UserLevel(spec.SenderID(sender)) > pl.UserLevel(spec.SenderID(owner)) {
		return nil
	}
	return errForbidden("state key %q belongs to %s", stateKey, owner)
}
