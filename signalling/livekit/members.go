package livekit

import (
	"context"
	"encoding/json"
	"time"

	"github.com/livekit/protocol/livekit"
)

// RoomState is the homeserver's view of room membership and state that
// the signalling server reads to remove participants who left the call.
// *homeserver.Server satisfies it.
type RoomState interface {
	// Membership returns userID's membership of roomID ("" if none).
	Membership(ctx context.Context, roomID, userID string) (string, error)
	// StateContent returns a piece of current room state (ok false when
	// there is none).
	StateContent(ctx context.Context, roomID, evType, stateKey string) (content json.RawMessage, ok bool, err error)
}

// callMemberType is the MatrixRTC membership state event (MSC4143, the
// unstable name of MSC3401's m.call.member).
const callMemberType = "org.matrix.msc3401.call.member"

// inCall reports whether the device has a MatrixRTC membership in the
// room: a non-empty org.matrix.msc3401.call.member event under one of the
// state keys clients use for a device (MSC4143: "_<user>_<device>_m.call"
// and "<user>_<device>"), or a legacy per-user event whose memberships
// list the device.
func inCall(ctx context.Context, rs RoomState, m MatrixMember) (bool, error) {
	for _, key := range []string{"_" + m.UserID + "_" + m.DeviceID + "_m.call", m.UserID + "_" + m.DeviceID} {
		c, ok, err := rs.StateContent(ctx, m.RoomID, callMemberType, key)
		if err != nil {
			return false, err
		}
		if ok && nonEmptyObject(c) {
			return true, nil
		}
	}
	c, ok, err := rs.StateContent(ctx, m.RoomID, callMemberType, m.UserID)
	if err != nil || !ok {
		return false, err
	}
	var legacy struct {
		Memberships []struct {
			DeviceID string `json:"device_id"`
		} `json:"memberships"`
	}
	if json.Unmarshal(c, &legacy) != nil {
		return false, nil
	}
	for _, ms := range legacy.Memberships {
		if ms.DeviceID == m.DeviceID {
			return true, nil
		}
	}
	return false, nil
}

func nonEmptyObject(b json.RawMessage) bool {
	var o map[string]json.RawMessage
	return json.Unmarshal(b, &o) == nil && len(o) > 0
}

// watchMembers checks the Matrix side of every participant every
// interval until stop is closed: a participant whose user left the room,
// or whose call membership was there and is gone (the client hung up, or
// its delayed leave event fired, MSC4140), is removed from the call.
// Participants whose membership was never seen are left alone: plain
// LiveKit clients publish none, and Element Call may connect before its
// membership is written.
func (s *Server) watchMembers(stop <-chan struct{}) {
	t := time.NewTicker(s.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		var all []*session
		for _, r := range s.rooms {
			all = append(all, r.list(nil)...)
		}
		s.mu.Unlock()
		for _, ss := range all {
			m := ss.grant.Matrix
			if m.RoomID == "" || m.UserID == "" {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CheckInterval)
			ss.checkMember(ctx, s.cfg.RoomState)
			cancel()
		}
		s.checks.Add(1)
	}
}

// checkMember removes ss if its Matrix user or call membership is gone.
func (ss *session) checkMember(ctx context.Context, rs RoomState) {
	m := ss.grant.Matrix
	ms, err := rs.Membership(ctx, m.RoomID, m.UserID)
	if err != nil {
		ss.s.log.Warn("checking room membership", "participant", ss.sid, "err", err)
		return
	}
	if ms != "join" {
		ss.s.log.Info("participant's user left the room; removing", "participant", ss.sid, "user_id", m.UserID)
		ss.end(livekit.DisconnectReason_PARTICIPANT_REMOVED, "left the room")
		return
	}
	in, err := inCall(ctx, rs, m)
	if err != nil {
		ss.s.log.Warn("checking call membership", "participant", ss.sid, "err", err)
		return
	}
	ss.mu.Lock()
	seen := ss.memberSeen
	if in {
		ss.memberSeen = true
	}
	ss.mu.Unlock()
	if !in && seen {
		ss.s.log.Info("participant's call membership is gone; removing", "participant", ss.sid, "user_id", m.UserID)
		ss.end(livekit.DisconnectReason_PARTICIPANT_REMOVED, "call membership ended")
	}
}
