package homeserver

import (
	"net/http"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestFederationServesRoomData reads a shared room's events, state, auth
// chains and history from A as B, and checks that a server outside the
// room is refused.
func TestFederationServesRoomData(t *testing.T) {
	b := storagetest.Backends(t)[0]
	a, bb, cc := startFedNode(t, b), startFedNode(t, b), startFedNode(t, b)
	ctx := testCtx(t)
	alice, bob := a.user(t, "alice"), bb.user(t, "bob")
	room := joinAcross(t, ctx, alice, bob, newFedSyncer(t, bob))
	roomID := string(room)
	var sent []string
	for _, body := range []string{"one", "two", "three"} {
		r, err := alice.SendText(ctx, room, body)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, string(r.EventID))
	}
	cli, us, them := bb.srv.fed.Client(), spec.ServerName(bb.name), spec.ServerName(a.name)
	ver := gomatrixserverlib.RoomVersion(defaultRoomVersion)

	txn, err := cli.GetEvent(ctx, us, them, sent[2])
	if err != nil || len(txn.PDUs) != 1 || !strings.Contains(string(txn.PDUs[0]), "three") {
		t.Fatalf("event: %v %v", txn.PDUs, err)
	}
	ids, err := cli.LookupStateIDs(ctx, us, them, roomID, sent[2])
	if err != nil || len(ids.StateEventIDs) < 5 || len(ids.AuthEventIDs) == 0 {
		t.Fatalf("state_ids: %+v %v", ids, err)
	}
	st, err := cli.LookupState(ctx, us, them, roomID, sent[2], ver)
	if err != nil || len(st.StateEvents) != len(ids.StateEventIDs) {
		t.Fatalf("state: %d events, %v", len(st.StateEvents), err)
	}
	auth, err := cli.GetEventAuth(ctx, us, them, ver, roomID, sent[2])
	if err != nil || len(auth.AuthEvents) < 3 {
		t.Fatalf("event_auth: %d, %v", len(auth.AuthEvents), err)
	}
	bf, err := cli.Backfill(ctx, us, them, roomID, 2, []string{sent[2]})
	if err != nil || len(bf.PDUs) != 2 || !strings.Contains(string(bf.PDUs[0]), "three") || !strings.Contains(string(bf.PDUs[1]), "two") {
		t.Fatalf("backfill: %d %v", len(bf.PDUs), err)
	}
	missing, err := cli.LookupMissingEvents(ctx, us, them, roomID, fclient.MissingEvents{Limit: 10, EarliestEvents: []string{sent[0]}, LatestEvents: []string{sent[2]}}, ver)
	if err != nil || len(missing.Events) != 1 || !strings.Contains(string(missing.Events[0]), "two") {
		t.Fatalf("get_missing_events: %d %v", len(missing.Events), err)
	}
	// make_leave hands out a template for B's user.
	ml, err := cli.MakeLeave(ctx, us, them, roomID, string(bob.UserID))
	if err != nil || ml.LeaveEvent.Type != "m.room.member" || ml.LeaveEvent.SenderID != string(bob.UserID) {
		t.Fatalf("make_leave: %+v %v", ml, err)
	}
	// A server with nobody in the room reads nothing.
	if _, err := cc.srv.fed.Client().GetEvent(ctx, spec.ServerName(cc.name), them, sent[2]); err == nil {
		t.Fatal("a server outside the room read an event")
	}
	if _, err := cc.srv.fed.Client().LookupStateIDs(ctx, spec.ServerName(cc.name), them, roomID, sent[2]); err == nil {
		t.Fatal("a server outside the room read the state")
	}
}

func TestFederationUserQueries(t *testing.T) {
	b := storagetest.Backends(t)[0]
	a, bb := startFedNode(t, b), startFedNode(t, b)
	ctx := testCtx(t)
	alice := a.user(t, "alice")
	keys := map[string]any{
		"user_id": string(alice.UserID), "device_id": string(alice.DeviceID),
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2"},
		"keys":       map[string]string{"curve25519:" + string(alice.DeviceID): "k1", "ed25519:" + string(alice.DeviceID): "k2"},
	}
	if _, err := alice.MakeFullRequest(ctx, mautrix.FullRequest{Method: http.MethodPost, URL: alice.BuildClientURL("v3", "keys", "upload"),
		RequestJSON: map[string]any{"device_keys": keys, "one_time_keys": map[string]any{"signed_curve25519:AAAA": map[string]any{"key": "otk"}}}}); err != nil {
		t.Fatal(err)
	}
	cli, us, them := bb.srv.fed.Client(), spec.ServerName(bb.name), spec.ServerName(a.name)
	devs, err := cli.GetUserDevices(ctx, us, them, string(alice.UserID))
	if err != nil || len(devs.Devices) != 1 || devs.Devices[0].DeviceID != string(alice.DeviceID) {
		t.Fatalf("user/devices: %+v %v", devs, err)
	}
	q, err := cli.QueryKeys(ctx, us, them, map[string][]string{string(alice.UserID): {}})
	if err != nil || len(q.DeviceKeys[string(alice.UserID)]) != 1 {
		t.Fatalf("user/keys/query: %+v %v", q, err)
	}
	claim, err := cli.ClaimKeys(ctx, us, them, map[string]map[string]string{string(alice.UserID): {string(alice.DeviceID): "signed_curve25519"}})
	if err != nil || len(claim.OneTimeKeys[string(alice.UserID)][string(alice.DeviceID)]) != 1 {
		t.Fatalf("user/keys/claim: %+v %v", claim, err)
	}
	// B's clients see A's users: profile, device keys, one-time keys.
	bob := bb.user(t, "bob")
	if err := alice.SetDisplayName(ctx, "Alice A"); err != nil {
		t.Fatal(err)
	}
	prof, err := bob.GetProfile(ctx, alice.UserID)
	if err != nil || prof.DisplayName != "Alice A" {
		t.Fatalf("remote profile: %+v %v", prof, err)
	}
	var kq struct {
		DeviceKeys map[string]map[string]map[string]any `json:"device_keys"`
		Failures   map[string]any                       `json:"failures"`
	}
	if _, err := bob.MakeFullRequest(ctx, mautrix.FullRequest{Method: http.MethodPost, URL: bob.BuildClientURL("v3", "keys", "query"),
		RequestJSON: map[string]any{"device_keys": map[string][]string{string(alice.UserID): {}}}, ResponseJSON: &kq}); err != nil {
		t.Fatal(err)
	}
	if _, ok := kq.DeviceKeys[string(alice.UserID)][string(alice.DeviceID)]; !ok || len(kq.Failures) != 0 {
		t.Fatalf("remote keys/query: %+v", kq)
	}
	// OpenID: a token from A's client API identifies alice to B.
	tok, err := alice.RequestOpenIDToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fc := fclient.NewClient(fclient.WithTransport(bb.srv.fed.Transport()))
	info, err := fc.LookupUserInfo(ctx, them, tok.AccessToken)
	if err != nil || info.Sub != string(alice.UserID) {
		t.Fatalf("openid/userinfo: %+v %v", info, err)
	}
	if _, err := fc.LookupUserInfo(ctx, them, "bogus"); err == nil {
		t.Fatal("a bogus OpenID token was accepted")
	}
}

// TestFederationThreeServersAndAlias joins users of B (by alias) and C
// (by room ID and via) to a room on A: every message reaches the two
// other servers, including C's, which B learns of through A's relay.
func TestFederationThreeServersAndAlias(t *testing.T) {
	b := storagetest.Backends(t)[0]
	a, bb, cc := startFedNode(t, b), startFedNode(t, b), startFedNode(t, b)
	ctx := testCtx(t)
	alice, bob, carol := a.user(t, "alice"), bb.user(t, "bob"), cc.user(t, "carol")
	bobSync, carolSync, aliceSync := newFedSyncer(t, bob), newFedSyncer(t, carol), newFedSyncer(t, alice)
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "lobby"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, "#lobby:"+a.name, nil); err != nil {
		t.Fatalf("join by remote alias: %v", err)
	}
	if _, err := carol.JoinRoom(ctx, string(room.RoomID), &mautrix.ReqJoinRoom{Via: []string{a.name}}); err != nil {
		t.Fatalf("join by room ID via A: %v", err)
	}
	for _, c := range []struct {
		from *mautrix.Client
		to   []*fedSyncer
	}{{alice, []*fedSyncer{bobSync, carolSync}}, {bob, []*fedSyncer{aliceSync, carolSync}}, {carol, []*fedSyncer{aliceSync, bobSync}}} {
		if _, err := c.from.SendText(ctx, room.RoomID, "hi from "+string(c.from.UserID)); err != nil {
			t.Fatal(err)
		}
		for _, s := range c.to {
			got := s.waitTimeline(room.RoomID, c.from.UserID, "m.room.message", 1)
			if got[0].Content.Raw["body"] != "hi from "+string(c.from.UserID) {
				t.Fatalf("%s got %v", s.cli.UserID, got[0].Content.Raw)
			}
		}
	}
	for _, n := range []struct {
		cli *mautrix.Client
	}{{alice}, {bob}, {carol}} {
		m, err := n.cli.JoinedMembers(ctx, room.RoomID)
		if err != nil || len(m.Joined) != 3 {
			t.Fatalf("%s sees %d members (%v)", n.cli.UserID, len(m.Joined), err)
		}
	}
}
