package livekit

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
)

// TestMembershipEndsSession: a participant whose MatrixRTC membership
// was there and is emptied (a hangup, or a delayed leave event firing)
// is told to leave and disconnected; one whose membership stays is not.
func TestMembershipEndsSession(t *testing.T) {
	e := newEnv(t, envOpts{server: func(c *ServerConfig) {
		c.CheckInterval = 100 * time.Millisecond
	}, roomState: true})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	room := e.room(t, alice)
	if _, err := bob.JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	// Members may write their call memberships (MSC4143 state keys).
	var pl event.PowerLevelsEventContent
	if err := alice.StateEvent(ctx, room, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	if pl.Events == nil {
		pl.Events = map[string]int{}
	}
	pl.Events[callMemberType] = 0
	if _, err := alice.SendStateEvent(ctx, room, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	memberType := event.Type{Type: callMemberType, Class: event.StateEventType}
	join := func(cli *mautrix.Client, dev string) (*websocket.Conn, *session) {
		t.Helper()
		key := "_" + string(cli.UserID) + "_" + dev + "_m.call"
		if _, err := cli.SendStateEvent(ctx, room, memberType, key, map[string]any{
			"application": "m.call", "call_id": "", "scope": "m.room", "device_id": dev,
			"focus_active": map[string]any{"type": "livekit", "focus_selection": "oldest_membership"},
		}); err != nil {
			t.Fatalf("call member: %v", err)
		}
		st, out := e.post(t, "/sfu/get", map[string]any{"room": room, "openid_token": openID(t, cli), "device_id": dev})
		if st != http.StatusOK {
			t.Fatalf("/sfu/get: %d %v", st, out)
		}
		c, _, err := websocket.Dial(ctx, e.wsURL(out["jwt"].(string)), nil)
		if err != nil {
			t.Fatal(err)
		}
		var ss *session
		waitFor(t, "membership seen", func() bool {
			e.sig.mu.Lock()
			defer e.sig.mu.Unlock()
			for _, r := range e.sig.rooms {
				for _, o := range r.list(nil) {
					o.mu.Lock()
					seen := o.memberSeen
					o.mu.Unlock()
					if o.grant.Matrix.UserID == string(cli.UserID) && seen {
						ss = o
						return true
					}
				}
			}
			return false
		})
		return c, ss
	}
	ca, _ := join(alice, "ADEV")
	cb, sb := join(bob, "BDEV")
	defer ca.CloseNow()
	defer cb.CloseNow()
	if sb.grant.Matrix.RoomID != string(room) || sb.grant.Matrix.DeviceID != "BDEV" {
		t.Fatalf("token's Matrix member %+v", sb.grant.Matrix)
	}
	// Bob's membership is emptied: his connection is closed.
	if _, err := bob.SendStateEvent(ctx, room, memberType, "_"+string(bob.UserID)+"_BDEV_m.call", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	code, why := readClose(t, ctx, cb)
	if code != websocket.StatusNormalClosure || why != "call membership ended" {
		t.Fatalf("bob closed with %v %q", code, why)
	}
	// Alice stays, however many checks run.
	n := e.sig.checks.Load()
	waitFor(t, "three more membership checks", func() bool { return e.sig.checks.Load() >= n+3 })
	e.sig.mu.Lock()
	left := 0
	for _, r := range e.sig.rooms {
		left += len(r.list(nil))
	}
	e.sig.mu.Unlock()
	if left != 1 {
		t.Fatalf("%d participants left, want alice alone", left)
	}
	// Alice leaves the Matrix room: she is removed too.
	if _, err := alice.LeaveRoom(ctx, room); err != nil {
		t.Fatal(err)
	}
	if code, why := readClose(t, ctx, ca); why != "left the room" {
		t.Fatalf("alice closed with %v %q", code, why)
	}
}
