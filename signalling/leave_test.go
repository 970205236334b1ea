package signalling

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestLeaving covers the ways out of a call besides a to-device
// m.call.hangup (TestGroupCall): call membership removed, emptied or
// expired, leaving the room, and a dead data channel (no pong), where the
// leaver gets a hangup with the reason; and m.call.hangup on the data
// channel and m.call.reject, where it gets none. Each time the focus
// forgets the leaver, and the participant who
// stays sees its stream leave the metadata and its tracks leave the
// connection. The conference ends when the last one leaves.
func TestLeaving(t *testing.T) {
	e := newEnv(t, envOpts{autoSubscribe: true, focus: func(c *FocusConfig) {
		c.PingInterval, c.PongTimeout = 100*time.Millisecond, time.Second
	}})
	owner := e.user(t, "owner")
	const conf = "conf1"
	room := e.callRoom(t, owner, conf)
	alice := e.participant(t, "alice", room, conf, partOpts{})
	alice.invite()
	testkit.Eventually(t, testTimeout, "alice answered", alice.isAnswered)

	cases := []struct {
		name   string
		leave  func(p *participant)
		reason string
	}{
		{name: "membership removed", reason: ReasonNotJoined, leave: func(p *participant) {
			p.setMember(map[string]any{})
		}},
		{name: "membership emptied", reason: ReasonNotJoined, leave: func(p *participant) {
			p.setMember(map[string]any{"m.calls": []any{}})
		}},
		{name: "membership expired", reason: ReasonNotJoined, leave: func(p *participant) {
			p.publishMember(string(p.cli.DeviceID), time.Now().Add(300*time.Millisecond))
		}},
		{name: "left the room", reason: ReasonNotJoined, leave: func(p *participant) {
			if _, err := p.cli.LeaveRoom(context.Background(), p.room); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "no pong", reason: ReasonICETimeout, leave: func(p *participant) {
			p.noPong.Store(true)
		}},
		// The client's own ways out: no hangup comes back.
		{name: "hangup on the data channel", leave: func(p *participant) {
			p.sendDC(TypeHangup, struct{}{})
		}},
		{name: "reject", leave: func(p *participant) {
			p.send(TypeReject, p.callFields())
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := []string{"bob", "carol", "dave", "erin", "frank", "grace", "heidi"}[i]
			p := e.participant(t, name, room, conf, partOpts{})
			p.invite()
			waitMedia(t, []*participant{alice, p})
			testkit.Eventually(t, testTimeout, name+"'s data channel in use", func() bool {
				p.mu.Lock()
				defer p.mu.Unlock()
				return p.pings > 0
			})
			p.hungUp.Store(true) // errors from here on are expected
			tc.leave(p)
			if tc.reason != "" {
				testkit.Eventually(t, testTimeout, name+"'s hangup", func() bool { _, ok := p.hangupReason(p.callID); return ok })
				if r, _ := p.hangupReason(p.callID); r != tc.reason {
					t.Errorf("hangup reason %q, want %q", r, tc.reason)
				}
			}
			testkit.Eventually(t, testTimeout, "the focus to drop "+name, func() bool {
				return e.focus.Calls() == 1 && gauge(t, e.focusReg, "switchboard_focus_calls") == 1
			})
			if r, ok := p.hangupReason(p.callID); tc.reason == "" && ok {
				t.Errorf("%s left by itself but got a hangup (%q)", name, r)
			}
			testkit.Eventually(t, testTimeout, "alice to lose "+name+"'s stream", func() bool {
				_, inMeta := alice.metaStream(name + "-stream")
				return !inMeta && !alice.offeredTrack(name+"-audio") && !alice.offeredTrack(name+"-video")
			})
			p.close()
		})
	}
	if r, ok := alice.hangupReason(alice.callID); ok {
		t.Fatalf("alice, who stayed, got a hangup (%q)", r)
	}
	alice.hungUp.Store(true)
	alice.setMember(map[string]any{})
	testkit.Eventually(t, testTimeout, "the conference to end", func() bool {
		return e.focus.Calls() == 0 && gauge(t, e.focusReg, "switchboard_focus_calls") == 0 &&
			gauge(t, e.sfuReg, "switchboard_sfu_conferences") == 0 &&
			gauge(t, e.sfuReg, "switchboard_sfu_participants") == 0
	})
	if got := counter(t, e.focusReg, "switchboard_focus_hangups_total", "reason", ReasonICETimeout); got != 1 {
		t.Errorf("%v ice_timeout hangups counted, want 1", got)
	}
}

// setMember replaces the participant's call membership content.
func (p *participant) setMember(content map[string]any) {
	p.t.Helper()
	if _, err := p.cli.SendStateEvent(context.Background(), p.room, evCallMember, string(p.cli.UserID), content); err != nil {
		p.t.Fatalf("%s m.call.member: %v", p.name, err)
	}
}
