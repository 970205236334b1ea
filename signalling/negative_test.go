package signalling

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestInviteRefused sends invites the focus must refuse: each gets a
// to-device m.call.hangup with a reason, and nothing is created in the
// focus or the SFU.
func TestInviteRefused(t *testing.T) {
	e := newEnv(t, envOpts{autoSubscribe: true})
	owner := e.user(t, "owner")
	const conf = "conf1"
	room := e.callRoom(t, owner, conf)
	other := e.callRoom(t, owner, "conf2")

	cases := []struct {
		name   string
		opts   partOpts
		edit   func(p *participant, c map[string]any)
		reason string
	}{
		{name: "not joined", opts: partOpts{noJoin: true, noMember: true}, reason: ReasonNotJoined},
		{name: "joined without call membership", opts: partOpts{noMember: true}, reason: ReasonNotJoined},
		{name: "membership naming another device", opts: partOpts{memberDevice: "SOMEONEELSE"}, reason: ReasonNotJoined},
		{name: "other session", edit: func(_ *participant, c map[string]any) { c["sender_session_id"] = "stale" },
			reason: ReasonNotJoined},
		{name: "expired membership", opts: partOpts{expiresIn: -time.Minute}, reason: ReasonNotJoined},
		{name: "no such call in the room", edit: func(_ *participant, c map[string]any) { c["conf_id"] = "nope" },
			reason: ReasonNotJoined},
		{name: "room the sender is not in", edit: func(_ *participant, c map[string]any) { c["room_id"] = string(other) },
			reason: ReasonNotJoined},
		{name: "malformed offer", edit: func(_ *participant, c map[string]any) {
			c["offer"] = map[string]any{"type": "offer", "sdp": "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\nm=garbage\r\n"}
		}, reason: ReasonInvalid},
		{name: "offer not an object", edit: func(_ *participant, c map[string]any) { c["offer"] = "v=0" },
			reason: ReasonInvalid},
		{name: "answer instead of offer", edit: func(_ *participant, c map[string]any) {
			c["offer"] = map[string]any{"type": "answer", "sdp": "v=0\r\n"}
		}, reason: ReasonInvalid},
		{name: "missing room_id", edit: func(_ *participant, c map[string]any) { delete(c, "room_id") },
			reason: ReasonInvalid},
		{name: "oversized", edit: func(_ *participant, c map[string]any) {
			c["offer"] = map[string]any{"type": "offer", "sdp": "v=0\r\n" + strings.Repeat("a=x\r\n", 14000)}
		}, reason: ReasonInvalid},
		{name: "control character in conf_id", edit: func(_ *participant, c map[string]any) { c["conf_id"] = "a\x00b" },
			reason: ReasonInvalid},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := e.participant(t, fmt.Sprintf("user%d", i), room, conf, tc.opts)
			c := p.inviteContent(p.offer())
			if tc.edit != nil {
				tc.edit(p, c)
			}
			p.send(TypeInvite, c)
			testkit.Eventually(t, testTimeout, "hangup", func() bool { _, ok := p.hangupReason(p.callID); return ok })
			if r, _ := p.hangupReason(p.callID); r != tc.reason {
				t.Errorf("hangup reason %q, want %q", r, tc.reason)
			}
			if p.isAnswered() {
				t.Error("refused invite was answered")
			}
			assertNothing(t, e)
		})
	}
}

// assertNothing checks that the focus and the SFU hold no call.
func assertNothing(t *testing.T, e *env) {
	t.Helper()
	if n := e.focus.Calls(); n != 0 {
		t.Errorf("focus has %d calls", n)
	}
	for _, g := range []string{"switchboard_sfu_conferences", "switchboard_sfu_participants"} {
		if v := gauge(t, e.sfuReg, g); v != 0 {
			t.Errorf("%s = %v", g, v)
		}
	}
}

// TestInviteFlood: a user who floods the focus with invites gets a
// hangup for each (user_busy past the burst) and creates nothing; other
// users are not affected.
func TestInviteFlood(t *testing.T) {
	const burst = 3
	e := newEnv(t, envOpts{autoSubscribe: true, focus: func(c *FocusConfig) {
		c.InviteBurst, c.InviteRate = burst, 0.001
	}})
	owner := e.user(t, "owner")
	const conf = "conf1"
	room := e.callRoom(t, owner, conf)
	// Joined to the room but not in the call: every invite is refused.
	mallory := e.participant(t, "mallory", room, conf, partOpts{noMember: true, noMedia: true})
	const n = 30
	for i := range n {
		mallory.callID = fmt.Sprintf("flood-%d", i)
		mallory.send(TypeInvite, mallory.inviteContent("v=0\r\n"))
	}
	reasons := map[string]int{}
	testkit.Eventually(t, testTimeout, "a hangup for every invite", func() bool {
		for i := range n {
			if _, ok := mallory.hangupReason(fmt.Sprintf("flood-%d", i)); !ok {
				return false
			}
		}
		return true
	})
	for i := range n {
		r, _ := mallory.hangupReason(fmt.Sprintf("flood-%d", i))
		reasons[r]++
	}
	if reasons[ReasonNotJoined] != burst || reasons[ReasonBusy] != n-burst {
		t.Errorf("hangup reasons %v, want %d %s and %d %s", reasons, burst, ReasonNotJoined, n-burst, ReasonBusy)
	}
	assertNothing(t, e)
	if got := counter(t, e.focusReg, "switchboard_focus_invites_total", "result", ReasonBusy); got != n-burst {
		t.Errorf("rate-limited invites counted %v, want %d", got, n-burst)
	}

	// Someone else still gets in.
	alice := e.participant(t, "alice", room, conf, partOpts{})
	alice.invite()
	testkit.Eventually(t, testTimeout, "alice answered", alice.isAnswered)
}

// TestForgedMembership: a call membership written by someone else under
// another user's state key does not let its author in. Mallory, joined to
// the room, writes an m.call.member under alice's user ID naming her own
// device and session, then invites: the focus reads only the sender's own
// state key and refuses.
func TestForgedMembership(t *testing.T) {
	e := newEnv(t, envOpts{autoSubscribe: true})
	owner := e.user(t, "owner")
	const conf = "conf1"
	room := e.callRoom(t, owner, conf)
	alice := e.user(t, "alice")
	mallory := e.participant(t, "mallory", room, conf, partOpts{noMember: true})
	content := map[string]any{"m.calls": []any{map[string]any{
		"m.call_id": conf,
		"m.devices": []any{map[string]any{
			"device_id": string(mallory.cli.DeviceID), "session_id": mallory.session,
			"expires_ts": time.Now().Add(time.Hour).UnixMilli(),
		}},
	}}}
	if _, err := mallory.cli.SendStateEvent(context.Background(), room, evCallMember, string(alice.UserID), content); err != nil {
		t.Logf("the homeserver refused the forged membership: %v", err)
	}
	mallory.invite()
	testkit.Eventually(t, testTimeout, "hangup", func() bool { _, ok := mallory.hangupReason(mallory.callID); return ok })
	if r, _ := mallory.hangupReason(mallory.callID); r != ReasonNotJoined {
		t.Errorf("hangup reason %q, want %q", r, ReasonNotJoined)
	}
	if mallory.isAnswered() {
		t.Error("invite on a forged membership was answered")
	}
	assertNothing(t, e)
}
