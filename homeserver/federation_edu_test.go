package homeserver

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	clockpkg "github.com/switchboard-chat/switchboard/internal/clock"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestFederationDeviceListUpdate: bob on B logs in a second device and
// uploads its keys; B sends m.device_list_update EDUs, so alice's /sync on
// A lists bob in device_lists.changed, and her /keys/query shows the new
// device.
func TestFederationDeviceListUpdate(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb := startFedNode(t, b), startFedNode(t, b)
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		aliceSync, bobSync := newFedSyncer(t, alice), newFedSyncer(t, bob)
		joinAcross(t, ctx, alice, bob, bobSync)
		// Bob's join itself lists him as changed (a new room member).
		aliceSync.until(func(r *mautrix.RespSync) bool { return slices.Contains(r.DeviceLists.Changed, bob.UserID) })

		second, err := mautrix.NewClient(bb.URL, "", "")
		if err != nil {
			t.Fatal(err)
		}
		login, err := second.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "bob"}, Password: "password", StoreCredentials: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := second.UploadKeys(ctx, &mautrix.ReqUploadKeys{DeviceKeys: &mautrix.DeviceKeys{
			UserID: bob.UserID, DeviceID: login.DeviceID, Algorithms: []id.Algorithm{id.AlgorithmMegolmV1},
			Keys: mautrix.KeyMap{id.NewDeviceKeyID(id.KeyAlgorithmEd25519, login.DeviceID): "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY"}}}); err != nil {
			t.Fatal(err)
		}
		aliceSync.until(func(r *mautrix.RespSync) bool { return slices.Contains(r.DeviceLists.Changed, bob.UserID) })

		keys, err := alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bob.UserID: {}}})
		if err != nil {
			t.Fatal(err)
		}
		dk, ok := keys.DeviceKeys[bob.UserID][login.DeviceID]
		if !ok || dk.Keys[id.NewDeviceKeyID(id.KeyAlgorithmEd25519, login.DeviceID)] != "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY" {
			t.Fatalf("alice's keys/query of bob: %+v", keys.DeviceKeys[bob.UserID])
		}
	})
}

// sendEDUs sends EDUs from node from to node to in one signed
// transaction; the receiver applies them before it answers.
func sendEDUs(t *testing.T, from, to *fedNode, edus ...gomatrixserverlib.EDU) {
	t.Helper()
	txn := gomatrixserverlib.Transaction{TransactionID: gomatrixserverlib.TransactionID(randomString(8)), Origin: spec.ServerName(from.name),
		Destination: spec.ServerName(to.name), OriginServerTS: spec.AsTimestamp(time.Now()), PDUs: []json.RawMessage{}}
	for _, e := range edus {
		e.Origin, e.Destination = from.name, to.name
		txn.EDUs = append(txn.EDUs, e)
	}
	if _, err := from.srv.fed.Client().SendTransaction(context.Background(), txn); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func eduOf(t *testing.T, typ string, content any) gomatrixserverlib.EDU {
	t.Helper()
	c, err := json.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	return gomatrixserverlib.EDU{Type: typ, Content: c}
}

// TestFederationUserEDUsRefused: device list and presence EDUs about a
// user of another server than the sender, or about a user sharing no room
// with the receiver's users, or malformed, change nothing; the same EDUs
// about a user who shares a room apply.
func TestFederationUserEDUsRefused(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb := startFedNode(t, b), startFedNode(t, b)
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		carol := a.user(t, "carol") // on A, shares no room with anyone on B
		bobSync := newFedSyncer(t, bob)
		joinAcross(t, ctx, alice, bob, bobSync)
		from, err := bb.srv.db.MaxPos(ctx)
		if err != nil {
			t.Fatal(err)
		}
		elsewhere := "@mallory:elsewhere.example"
		dlu := func(user string) gomatrixserverlib.EDU {
			return eduOf(t, "m.device_list_update", map[string]any{"user_id": user, "device_id": "NEWDEV", "stream_id": 7, "prev_id": []int{}})
		}
		push := func(user string) gomatrixserverlib.EDU {
			return eduOf(t, "m.presence", map[string]any{"push": []map[string]any{{"user_id": user, "presence": "online", "last_active_ago": 5}}})
		}
		sendEDUs(t, a, bb,
			dlu(elsewhere), dlu(string(carol.UserID)), push(elsewhere), push(string(carol.UserID)),
			eduOf(t, "m.signing_key_update", map[string]any{"user_id": elsewhere}),
			eduOf(t, "m.device_list_update", map[string]any{"user_id": alice.UserID, "device_id": "X", "keys": "not an object"}),
			eduOf(t, "m.device_list_update", map[string]any{"user_id": alice.UserID, "stream_id": 1}),
			eduOf(t, "m.device_list_update", []int{1}),
			eduOf(t, "m.presence", map[string]any{"push": []map[string]any{{"user_id": alice.UserID, "presence": "busy"}}}),
			eduOf(t, "m.presence", map[string]any{"push": "no"}),
		)
		upto, err := bb.srv.db.MaxPos(ctx)
		if err != nil {
			t.Fatal(err)
		}
		changed, err := bb.srv.db.DeviceListChangesBetween(ctx, from, upto)
		if err != nil {
			t.Fatal(err)
		}
		if len(changed) != 0 {
			t.Fatalf("refused EDUs recorded device list changes of %v", changed)
		}
		for _, u := range []string{elsewhere, string(carol.UserID), string(alice.UserID)} {
			if st, ok := bb.srv.eph.Presence(u); ok {
				t.Fatalf("refused EDUs recorded presence of %s: %+v", u, st)
			}
		}

		// The same EDUs about alice, who shares a room with bob, apply.
		sendEDUs(t, a, bb, dlu(string(alice.UserID)), push(string(alice.UserID)))
		if upto, err = bb.srv.db.MaxPos(ctx); err != nil {
			t.Fatal(err)
		}
		if changed, err = bb.srv.db.DeviceListChangesBetween(ctx, from, upto); err != nil || !slices.Equal(changed, []string{string(alice.UserID)}) {
			t.Fatalf("device list changes after alice's EDU: %v, %v", changed, err)
		}
		if st, ok := bb.srv.eph.Presence(string(alice.UserID)); !ok || st.Presence != presenceOnline {
			t.Fatalf("alice's presence on B: %+v, %v", st, ok)
		}
	})
}

// TestFederationPresence: alice on A sets herself unavailable with a
// status message; bob on B sees it in /sync and GET .../status.
func TestFederationPresence(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb := startFedNode(t, b), startFedNode(t, b)
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		bobSync := newFedSyncer(t, bob)
		joinAcross(t, ctx, alice, bob, bobSync)
		// A must know bob joined before it has anyone to tell.
		deadline := time.Now().Add(fedWait)
		for {
			if m, err := a.srv.db.Membership(ctx, string(firstRoom(t, ctx, bob)), string(bob.UserID)); err == nil && m == "join" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("bob's join did not reach A")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: "in a call"}); err != nil {
			t.Fatal(err)
		}
		bobSync.until(func(r *mautrix.RespSync) bool {
			p := presenceOf(r, alice.UserID)
			return p != nil && p["presence"] == "unavailable" && p["status_msg"] == "in a call"
		})
		got, err := bob.GetPresence(ctx, alice.UserID)
		if err != nil || got.Presence != event.PresenceUnavailable || got.StatusMsg != "in a call" {
			t.Fatalf("bob's GET of alice's presence = %+v, %v", got, err)
		}
	})
}

// firstRoom returns the one room cli is joined to.
func firstRoom(t *testing.T, ctx context.Context, cli *mautrix.Client) id.RoomID {
	t.Helper()
	rooms, err := cli.JoinedRooms(ctx)
	if err != nil || len(rooms.JoinedRooms) != 1 {
		t.Fatalf("joined rooms of %s: %+v, %v", cli.UserID, rooms, err)
	}
	return rooms.JoinedRooms[0]
}

// TestFederationDeviceListEDUContents: while A is unreachable, bob on B
// logs in a device, uploads its keys and deletes it; B's queue for A then
// holds m.device_list_update EDUs for it, the keys in one and deleted in
// the last, with growing stream IDs whose prev_id names the one before.
// Once A is back, alice's /sync lists bob as changed.
func TestFederationDeviceListEDUContents(t *testing.T) {
	b := storagetest.Backends(t)[0]
	a, bb := startFedNode(t, b), startFedNode(t, b)
	ctx := testCtx(t)
	alice, bob := a.user(t, "alice"), bb.user(t, "bob")
	aliceSync, bobSync := newFedSyncer(t, alice), newFedSyncer(t, bob)
	joinAcross(t, ctx, alice, bob, bobSync)
	aliceSync.until(func(r *mautrix.RespSync) bool { return slices.Contains(r.DeviceLists.Changed, bob.UserID) })

	a.cut()
	phone, err := mautrix.NewClient(bb.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := phone.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword, DeviceID: "PHONE",
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "bob"}, Password: "password", StoreCredentials: true}); err != nil {
		t.Fatal(err)
	}
	const key = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY"
	if _, err := phone.UploadKeys(ctx, &mautrix.ReqUploadKeys{DeviceKeys: &mautrix.DeviceKeys{
		UserID: bob.UserID, DeviceID: "PHONE", Algorithms: []id.Algorithm{id.AlgorithmMegolmV1},
		Keys: mautrix.KeyMap{"ed25519:PHONE": key}}}); err != nil {
		t.Fatal(err)
	}
	if err := bob.DeleteDevice(ctx, "PHONE", &mautrix.ReqDeleteDevice[any]{Auth: passwordAuth("bob")}); err != nil {
		t.Fatal(err)
	}

	// The EDU's wire form (spec: Server-Server API, "m.device_list_update").
	type deviceListUpdate struct {
		UserID   string          `json:"user_id"`
		DeviceID string          `json:"device_id"`
		StreamID int64           `json:"stream_id"`
		PrevID   []int64         `json:"prev_id"`
		Deleted  bool            `json:"deleted,omitempty"`
		Keys     json.RawMessage `json:"keys,omitempty"`
	}
	var updates []deviceListUpdate
	deadline := time.Now().Add(fedWait)
	for {
		items, err := bb.srv.db.QueueBatch(ctx, a.name, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		updates = updates[:0]
		for _, it := range items {
			var e gomatrixserverlib.EDU
			if err := json.Unmarshal(it.JSON, &e); err != nil {
				t.Fatal(err)
			}
			if e.Type != "m.device_list_update" {
				continue
			}
			var u deviceListUpdate
			if err := json.Unmarshal(e.Content, &u); err != nil {
				t.Fatal(err)
			}
			updates = append(updates, u)
		}
		if n := len(updates); n > 0 && updates[n-1].Deleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's queue for A holds no deletion of PHONE: %+v", updates)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var withKeys bool
	for i, u := range updates {
		if u.UserID != string(bob.UserID) || u.DeviceID != "PHONE" {
			t.Fatalf("update %d is about %s %s", i, u.UserID, u.DeviceID)
		}
		var k struct {
			Keys map[string]string `json:"keys"`
		}
		if len(u.Keys) > 0 && json.Unmarshal(u.Keys, &k) == nil && k.Keys["ed25519:PHONE"] == key {
			withKeys = true
		}
		if i > 0 {
			prev := updates[i-1]
			if u.StreamID <= prev.StreamID || !slices.Equal(u.PrevID, []int64{prev.StreamID}) {
				t.Fatalf("update %d: stream %d prev %v after stream %d", i, u.StreamID, u.PrevID, prev.StreamID)
			}
		}
	}
	if !withKeys || len(updates) < 2 {
		t.Fatalf("updates for PHONE: %+v", updates)
	}

	a.restore()
	aliceSync.until(func(r *mautrix.RespSync) bool { return slices.Contains(r.DeviceLists.Changed, bob.UserID) })
	keys, err := alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bob.UserID: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := keys.DeviceKeys[bob.UserID]["PHONE"]; ok {
		t.Fatalf("alice still sees bob's deleted device: %+v", keys.DeviceKeys[bob.UserID])
	}
}

// TestFederationPresenceOnJoin: presence set before two servers shared a
// room reaches the other side when they start to: the joining server
// sends its user's presence to the room's servers, and the resident
// server sends its users' presence to the joining one (which holds it
// until its side of the join is stored).
func TestFederationPresenceOnJoin(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb := startFedNode(t, b), startFedNode(t, b)
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: "alice before"}); err != nil {
			t.Fatal(err)
		}
		if err := bob.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: "bob before"}); err != nil {
			t.Fatal(err)
		}
		aliceSync, bobSync := newFedSyncer(t, alice), newFedSyncer(t, bob)
		joinAcross(t, ctx, alice, bob, bobSync)
		bobSync.until(func(r *mautrix.RespSync) bool {
			p := presenceOf(r, alice.UserID)
			return p != nil && p["status_msg"] == "alice before"
		})
		aliceSync.until(func(r *mautrix.RespSync) bool {
			p := presenceOf(r, bob.UserID)
			return p != nil && p["status_msg"] == "bob before"
		})
	})
}

// TestFederationPresencePingAndTimeout: a remote user's unchanged
// presence stays as it is while their server pings it every 25 minutes,
// and reads as offline once their server has been silent for 30.
func TestFederationPresencePingAndTimeout(t *testing.T) {
	b := storagetest.Backends(t)[0]
	// Real time to start with: request signatures and keys are checked
	// against it.
	clock := clockpkg.NewFake(time.Now())
	withClock := func(c *Config) { c.Now = clock.Now }
	a, bb := startFedNode(t, b, withClock), startFedNode(t, b, withClock)
	ctx := testCtx(t)
	alice, bob := a.user(t, "alice"), bb.user(t, "bob")
	bobSync := newFedSyncer(t, bob)
	joinAcross(t, ctx, alice, bob, bobSync)
	waitJoined(t, a, firstRoom(t, ctx, bob), bob.UserID)
	if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: "away"}); err != nil {
		t.Fatal(err)
	}
	bobSync.until(func(r *mautrix.RespSync) bool {
		p := presenceOf(r, alice.UserID)
		return p != nil && p["status_msg"] == "away"
	})
	heard := func() time.Time {
		st, _ := bb.srv.eph.Presence(string(alice.UserID))
		return st.Heard
	}
	first := heard()
	// 26 minutes on, alice's server pings (its scan runs on a sync).
	clock.Advance(26 * time.Minute)
	if _, err := alice.SyncRequest(ctx, 0, "", "", false, event.PresenceUnavailable); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "B hears alice's ping", func() bool { return heard().After(first) })
	// 26 more: 52 since the change, 26 since the ping: still away on B.
	clock.Advance(26 * time.Minute)
	if _, err := bob.SyncRequest(ctx, 0, "", "", false, ""); err != nil { // B's scan
		t.Fatal(err)
	}
	got, err := bob.GetPresence(ctx, alice.UserID)
	if err != nil || got.Presence != event.PresenceUnavailable {
		t.Fatalf("after a ping alice reads as %+v, %v; want unavailable", got, err)
	}
	// A goes silent: 31 minutes after its last ping alice is offline on B.
	a.cut()
	clock.Advance(31 * time.Minute)
	bobSync.until(func(r *mautrix.RespSync) bool {
		p := presenceOf(r, alice.UserID)
		return p != nil && p["presence"] == "offline"
	})
}
