package homeserver

import (
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestDelegatedDelayedLeave: a delegated leave is restarted while its
// participant is on the SFU and sent once the participant disconnects
// (MSC4195); bad requests get the MSC's errors and delegate nothing.
func TestDelegatedDelayedLeave(t *testing.T) {
	b := storagetest.Backends(t)[0]
	clk := newTestClock()
	ts := newTestServer(t, b, func(c *Config) {
		c.Now = clk.Now
		c.RTC.LiveKitURLs = []string{"wss://sfu.test.local/"}
	})
	alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
	room := delayedRoom(t, alice, bob)
	key := "_@alice:test.local_" + alice.DeviceID.String() + "_m.call"
	wantStatus(t, ts.do(t, http.MethodPut, callMemberPath(room, key), alice.AccessToken, map[string]any{"application": "m.call"}), http.StatusOK, "")
	schedule := func(token, k string, delayMS string) string {
		r := ts.do(t, http.MethodPut, callMemberPath(room, k)+"?org.matrix.msc4140.delay="+delayMS, token, map[string]any{})
		wantStatus(t, r, http.StatusOK, "")
		id, _ := r.Body["delay_id"].(string)
		return id
	}
	leave := schedule(alice.AccessToken, key, "3600000")
	body := func(delayID, url string) map[string]any {
		return map[string]any{"url": url, "room_id": room, "slot_id": "m.call#ROOM", "delay_id": delayID,
			"member": map[string]any{"id": "member-1", "claimed_device_id": alice.DeviceID.String()}}
	}
	bobLeave := schedule(bob.AccessToken, "_@bob:test.local_"+bob.DeviceID.String()+"_m.call", "3600000")
	short := schedule(alice.AccessToken, key, "30000")

	wantStatus(t, ts.do(t, http.MethodPost, delegatePath, "", body(leave, "wss://sfu.test.local")), http.StatusUnauthorized, "M_MISSING_TOKEN")
	wantStatus(t, ts.do(t, http.MethodPost, delegatePath, alice.AccessToken, map[string]any{"url": "wss://sfu.test.local"}), http.StatusBadRequest, "M_BAD_JSON")
	wantStatus(t, ts.do(t, http.MethodPost, delegatePath, alice.AccessToken, "[1,"), http.StatusBadRequest, "M_NOT_JSON")
	wantStatus(t, ts.do(t, http.MethodPost, delegatePath, alice.AccessToken, body("syd_nope", "wss://sfu.test.local")), http.StatusBadRequest, "M_INVALID_PARAM")
	wantStatus(t, ts.do(t, http.MethodPost, delegatePath, alice.AccessToken, body(bobLeave, "wss://sfu.test.local")), http.StatusBadRequest, "M_INVALID_PARAM")
	wantStatus(t, ts.do(t, http.MethodPost, delegatePath, alice.AccessToken, body(short, "wss://sfu.test.local")), http.StatusBadRequest, "M_INVALID_PARAM")
	wantStatus(t, ts.do(t, http.MethodPost, delegatePath, alice.AccessToken, body(leave, "wss://elsewhere.example")), http.StatusBadRequest, "M_INVALID_PARAM")
	// The short one would fire while the clock moves below.
	wantStatus(t, ts.do(t, http.MethodPost, delayedPrefix+"/"+short+"/cancel", alice.AccessToken, nil), http.StatusOK, "")
	ts.rtcDelegates.mu.Lock()
	n := len(ts.rtcDelegates.byKey)
	ts.rtcDelegates.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d delegations after refused requests", n)
	}

	wantStatus(t, ts.do(t, http.MethodPost, delegatePath, alice.AccessToken, body(leave, "wss://sfu.test.local")), http.StatusOK, "")
	p := RTCParticipant{UserID: "@alice:test.local", RoomID: room, SlotID: "m.call#ROOM", MemberID: "member-1", DeviceID: alice.DeviceID.String()}
	ts.RTCParticipantConnected(p)
	// Before half the delay: no restart; after: restarted at now.
	clk.Advance(20 * time.Minute)
	ts.rtcDelegates.check(testCtx(t))
	d, err := ts.db.DelayedEvent(testCtx(t), leave)
	if err != nil {
		t.Fatal(err)
	}
	first := d.RunningSince
	clk.Advance(11 * time.Minute)
	ts.rtcDelegates.check(testCtx(t))
	if d, err = ts.db.DelayedEvent(testCtx(t), leave); err != nil {
		t.Fatal(err)
	}
	if d.RunningSince != clk.Now().UnixMilli() || d.RunningSince == first {
		t.Fatalf("running_since %d, want a restart at %d", d.RunningSince, clk.Now().UnixMilli())
	}
	if c := ts.stateContent(t, alice.AccessToken, room, "org.matrix.msc3401.call.member", key); c == "{}" {
		t.Fatal("left while connected")
	}

	// The participant drops off the SFU: the leave goes out now.
	ts.RTCParticipantDisconnected(p)
	ts.rtcDelegates.check(testCtx(t))
	if c := ts.stateContent(t, alice.AccessToken, room, "org.matrix.msc3401.call.member", key); c != "{}" {
		t.Fatalf("membership %s after the participant left the SFU, want {}", c)
	}
	if _, err := ts.db.DelayedEvent(testCtx(t), leave); err == nil {
		t.Fatal("delegated leave still scheduled after it was sent")
	}

	// A participant that never shows up: the server gives up and the
	// event stays scheduled, to run out by itself.
	again := schedule(alice.AccessToken, key, "3600000")
	wantStatus(t, ts.do(t, http.MethodPost, delegatePath, alice.AccessToken, body(again, "wss://sfu.test.local")), http.StatusOK, "")
	clk.Advance(delegateConnectWait + time.Second)
	ts.rtcDelegates.check(testCtx(t))
	ts.rtcDelegates.mu.Lock()
	n = len(ts.rtcDelegates.byKey)
	ts.rtcDelegates.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d delegations kept for a participant never seen", n)
	}
	if _, err := ts.db.DelayedEvent(testCtx(t), again); err != nil {
		t.Fatalf("undelegated leave: %v", err)
	}
}

func TestRTCParticipantMatches(t *testing.T) {
	base := RTCParticipant{UserID: "@a:x", RoomID: "!r:x", SlotID: "m.call#ROOM", MemberID: "m1", DeviceID: "D"}
	for _, c := range []struct {
		name string
		conn RTCParticipant
		want bool
	}{
		{"same", base, true},
		{"legacy connection without member or slot", RTCParticipant{UserID: "@a:x", RoomID: "!r:x", DeviceID: "D"}, true},
		{"other device", RTCParticipant{UserID: "@a:x", RoomID: "!r:x", DeviceID: "E"}, false},
		{"other member", RTCParticipant{UserID: "@a:x", RoomID: "!r:x", MemberID: "m2"}, false},
		{"other user", RTCParticipant{UserID: "@b:x", RoomID: "!r:x", MemberID: "m1", DeviceID: "D"}, false},
		{"other room", RTCParticipant{UserID: "@a:x", RoomID: "!s:x", MemberID: "m1"}, false},
		{"other slot", RTCParticipant{UserID: "@a:x", RoomID: "!r:x", SlotID: "m.call#X", MemberID: "m1"}, false},
	} {
		if got := base.matches(c.conn); got != c.want {
			t.Errorf("%s: matches = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestDelegatedLeaveShortConnection: a participant that connects and
// drops off the SFU before any check of the delegations ran still has
// its delegated leave sent at the next check, not after it would have
// run out by itself.
func TestDelegatedLeaveShortConnection(t *testing.T) {
	b := storagetest.Backends(t)[0]
	clk := newTestClock()
	ts := newTestServer(t, b, func(c *Config) { c.Now = clk.Now })
	alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
	room := delayedRoom(t, alice, bob)
	key := "_@alice:test.local_" + alice.DeviceID.String() + "_m.call"
	wantStatus(t, ts.do(t, http.MethodPut, callMemberPath(room, key), alice.AccessToken, map[string]any{"application": "m.call"}), http.StatusOK, "")
	r := ts.do(t, http.MethodPut, callMemberPath(room, key)+"?org.matrix.msc4140.delay=3600000", alice.AccessToken, map[string]any{})
	wantStatus(t, r, http.StatusOK, "")
	leave, _ := r.Body["delay_id"].(string)
	p := RTCParticipant{UserID: "@alice:test.local", RoomID: room, SlotID: "m.call#ROOM", MemberID: "m1", DeviceID: alice.DeviceID.String()}
	if err := ts.DelegateDelayedLeave(testCtx(t), p, leave); err != nil {
		t.Fatal(err)
	}
	ts.RTCParticipantConnected(p)
	ts.RTCParticipantDisconnected(p)
	ts.rtcDelegates.check(testCtx(t))
	if c := ts.stateContent(t, alice.AccessToken, room, "org.matrix.msc3401.call.member", key); c != "{}" {
		t.Fatalf("membership %s after a short connection, want {}", c)
	}
}
