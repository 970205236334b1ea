package signalling

import (
	"context"
	"encoding/json"
	"fmt"
)

// focusRef names a focus by user and device (MSC3898 "Discovering foci").
type focusRef struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
}

// callContent is the part of an MSC3401 m.call state event the focus
// reads. Foci, when present, lists the foci the call may use; this is not
// in MSC3401 (MSC3898 puts foci in m.call.member) but lets a room pin its
// call to one focus.
type callContent struct {
	Terminated json.RawMessage `json:"m.terminated"`
	Foci       []focusRef      `json:"m.foci"`
}

// memberDevice is one device of an MSC3401 m.call.member event.
type memberDevice struct {
	DeviceID   string     `json:"device_id"`
	SessionID  string     `json:"session_id"`
	ExpiresTS  *int64     `json:"expires_ts"`
	FociActive []focusRef `json:"m.foci.active"`
}

// memberContent is an MSC3401 m.call.member event; ExpiresTS is MSC3898's
// event-wide variant of the per-device expires_ts.
type memberContent struct {
	Calls []struct {
		CallID  string         `json:"m.call_id"`
		Devices []memberDevice `json:"m.devices"`
	} `json:"m.calls"`
	ExpiresTS *int64 `json:"m.expires_ts"`
}

// listsFocus reports whether refs is empty or names the focus.
func listsFocus(refs []focusRef, userID, deviceID string) bool {
	if len(refs) == 0 {
		return true
	}
	for _, r := range refs {
		if r.UserID == userID && r.DeviceID == deviceID {
			return true
		}
	}
	return false
}

// parseCall checks an m.call state event: the call is not terminated and,
// if it names foci, names this one.
func parseCall(b []byte, max int, focusUser, focusDevice string) error {
	var c callContent
	if err := decodeObject(b, max, &c); err != nil {
		return err
	}
	if len(c.Terminated) > 0 && string(c.Terminated) != "null" {
		return fmt.Errorf("%w: call terminated", ErrNotAllowed)
	}
	if !listsFocus(c.Foci, focusUser, focusDevice) {
		return fmt.Errorf("%w: the call names other foci", ErrNotAllowed)
	}
	return nil
}

// liveDevice checks an m.call.member event (MSC3401 "Call
// participation"): it lists conference confID with device deviceID in
// session sessionID, not expired at nowMS, and if it names active foci
// (MSC3898 m.foci.active), names this one. An expiry is required: a
// membership that never expires would outlive a crashed client.
func liveDevice(b []byte, max int, confID, deviceID, sessionID string, nowMS int64, focusUser, focusDevice string) error {
	var m memberContent
	if err := decodeObject(b, max, &m); err != nil {
		return err
	}
	for _, c := range m.Calls {
		if c.CallID != confID {
			continue
		}
		for _, d := range c.Devices {
			if d.DeviceID != deviceID {
				continue
			}
			if d.SessionID != sessionID {
				return fmt.Errorf("%w: device %q is in session %q, not %q", ErrNotAllowed, deviceID, d.SessionID, sessionID)
			}
			exp := d.ExpiresTS
			if exp == nil {
				exp = m.ExpiresTS
			}
			if exp == nil {
				return fmt.Errorf("%w: membership has no expires_ts", ErrNotAllowed)
			}
			if *exp <= nowMS {
				return fmt.Errorf("%w: membership expired", ErrNotAllowed)
			}
			if !listsFocus(d.FociActive, focusUser, focusDevice) {
				return fmt.Errorf("%w: device uses another focus", ErrNotAllowed)
			}
			return nil
		}
		return fmt.Errorf("%w: device %q not in the call membership", ErrNotAllowed, deviceID)
	}
	return fmt.Errorf("%w: no membership of conference %q", ErrNotAllowed, confID)
}

// stateEither reads a state event under its stable type, falling back to
// the unstable one.
func (f *Focus) stateEither(ctx context.Context, roomID, stable, unstable, key string) (json.RawMessage, bool, error) {
	for _, t := range []string{unstable, stable} {
		c, ok, err := f.hs.StateContent(ctx, roomID, t, key)
		if err != nil {
			return nil, false, err
		}
		if ok && len(c) > 2 { // {} is an emptied (left) membership
			return c, true, nil
		}
	}
	return nil, false, nil
}

// authorize checks that userID may be in conference confID of roomID on
// deviceID in sessionID: joined to the room, the room has that call, and
// the user's live call membership names the device and session.
func (f *Focus) authorize(ctx context.Context, roomID, confID, userID, deviceID, sessionID string) error {
	ms, err := f.hs.Membership(ctx, roomID, userID)
	if err != nil {
		return err
	}
	if ms != "join" {
		return fmt.Errorf("%w: membership %q", ErrNotAllowed, ms)
	}
	call, ok, err := f.stateEither(ctx, roomID, TypeCall, TypeCallUnstable, confID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: room has no call %q", ErrNotAllowed, confID)
	}
	if err := parseCall(call, f.cfg.MaxContentBytes, f.userID, f.cfg.DeviceID); err != nil {
		return err
	}
	member, ok, err := f.stateEither(ctx, roomID, TypeCallMember, TypeCallMemberUnstable, userID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: no call membership", ErrNotAllowed)
	}
	return liveDevice(member, f.cfg.MaxContentBytes, confID, deviceID, sessionID, f.cfg.Now().UnixMilli(), f.userID, f.cfg.DeviceID)
}
