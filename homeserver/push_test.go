package homeserver

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/clock"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// pushGateway is a real HTTP server on loopback that records what
// /_matrix/push/v1/notify receives, like Sygnal would.
type pushGateway struct {
	srv *httptest.Server
	// down makes the gateway drop connections without answering.
	down atomic.Bool
	// failed counts requests refused while down.
	failed atomic.Int64

	mu sync.Mutex // guards got and rejected
	// got holds every accepted notification, in arrival order.
	got []gatewayNotification
	// rejected are pushkeys answered in "rejected".
	rejected map[string]bool
}

// gatewayNotification is the part of a notify body tests look at.
type gatewayNotification struct {
	EventID           string         `json:"event_id"`
	RoomID            string         `json:"room_id"`
	Type              string         `json:"type"`
	Sender            string         `json:"sender"`
	SenderDisplayName string         `json:"sender_display_name"`
	Prio              string         `json:"prio"`
	Content           map[string]any `json:"content"`
	Counts            map[string]int `json:"counts"`
	Devices           []struct {
		AppID     string         `json:"app_id"`
		Pushkey   string         `json:"pushkey"`
		PushkeyTS int64          `json:"pushkey_ts"`
		Data      map[string]any `json:"data"`
		Tweaks    map[string]any `json:"tweaks"`
	} `json:"devices"`
	// At is when the gateway received it.
	At time.Time `json:"-"`
}

func newPushGateway(t testing.TB) *pushGateway {
	g := &pushGateway{rejected: map[string]bool{}}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_matrix/push/v1/notify" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		if g.down.Load() {
			g.failed.Add(1)
			// An outage: the connection drops without an answer.
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		var body struct {
			Notification gatewayNotification `json:"notification"`
		}
		if err := json.Unmarshal(raw, &body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		n := body.Notification
		n.At = time.Now()
		g.mu.Lock()
		g.got = append(g.got, n)
		rejected := []string{}
		for _, d := range n.Devices {
			if g.rejected[d.Pushkey] {
				rejected = append(rejected, d.Pushkey)
			}
		}
		g.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"rejected": rejected})
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *pushGateway) url() string { return g.srv.URL + "/_matrix/push/v1/notify" }

func (g *pushGateway) all() []gatewayNotification {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]gatewayNotification(nil), g.got...)
}

// waitEvent waits for the notification of eventID (for pushkey, if set).
func (g *pushGateway) waitEvent(t testing.TB, eventID id.EventID, pushkey string) gatewayNotification {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, n := range g.all() {
			if n.EventID == string(eventID) && (pushkey == "" || (len(n.Devices) == 1 && n.Devices[0].Pushkey == pushkey)) {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway got no notification for %s (pushkey %q); got %d others", eventID, pushkey, len(g.all()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pushOpts lets the test server reach a gateway on loopback and retry fast.
func pushOpts(c *Config) {
	c.Push = PushConfig{AllowNetworks: []string{"127.0.0.1/32"}, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}
}

// setPusher registers an http pusher for cli at the gateway.
func setPusher(t *testing.T, ts *testServer, cli *mautrix.Client, pushkey, url string, data map[string]any) {
	t.Helper()
	if data == nil {
		data = map[string]any{}
	}
	data["url"] = url
	r := ts.do(t, http.MethodPost, "/_matrix/client/v3/pushers/set", cli.AccessToken, map[string]any{
		"kind": "http", "app_id": "chat.switchboard.test", "pushkey": pushkey, "app_display_name": "Test",
		"device_display_name": "Phone", "lang": "en", "data": data,
	})
	wantStatus(t, r, http.StatusOK, "")
}

// directRoom has alice create a room and bob join it.
func directRoom(t *testing.T, alice, bob *mautrix.Client) id.RoomID {
	t.Helper()
	ctx := testCtx(t)
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}, IsDirect: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	return room.RoomID
}

func callInvite(callID string) map[string]any {
	return map[string]any{"call_id": callID, "party_id": "p1", "version": "1", "lifetime": 60000,
		"offer": map[string]any{"type": "offer", "sdp": "v=0\r\n"}}
}

func TestPushersSetListReplaceDelete(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b, pushOpts)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		list := func(cli *mautrix.Client) []map[string]any {
			r := ts.do(t, http.MethodGet, "/_matrix/client/v3/pushers", cli.AccessToken, nil)
			wantStatus(t, r, http.StatusOK, "")
			var out []map[string]any
			for _, p := range r.Body["pushers"].([]any) {
				out = append(out, p.(map[string]any))
			}
			return out
		}
		if n := len(list(alice)); n != 0 {
			t.Fatalf("a new user has %d pushers", n)
		}
		url := "https://push.example.org/_matrix/push/v1/notify"
		setPusher(t, ts, alice, "key1", url, map[string]any{"format": "event_id_only"})
		setPusher(t, ts, alice, "key1", url, nil) // replaces: same app_id and pushkey
		got := list(alice)
		if len(got) != 1 || got[0]["pushkey"] != "key1" || got[0]["kind"] != "http" || got[0]["lang"] != "en" {
			t.Fatalf("pushers after replace: %v", got)
		}
		if d := got[0]["data"].(map[string]any); d["url"] != url || d["format"] != nil {
			t.Fatalf("replaced pusher keeps old data: %v", d)
		}
		// Bob takes the same pushkey without append: alice's is removed.
		setPusher(t, ts, bob, "key1", url, nil)
		if n := len(list(alice)); n != 0 {
			t.Fatalf("a pushkey set by another user without append left %d pushers", n)
		}
		// With append, both keep it.
		r := ts.do(t, http.MethodPost, "/_matrix/client/v3/pushers/set", alice.AccessToken, map[string]any{
			"kind": "http", "app_id": "chat.switchboard.test", "pushkey": "key1", "app_display_name": "Test",
			"device_display_name": "Phone", "lang": "en", "data": map[string]any{"url": url}, "append": true,
		})
		wantStatus(t, r, http.StatusOK, "")
		if len(list(alice)) != 1 || len(list(bob)) != 1 {
			t.Fatalf("append: alice %d, bob %d pushers", len(list(alice)), len(list(bob)))
		}
		// kind null deletes.
		r = ts.do(t, http.MethodPost, "/_matrix/client/v3/pushers/set", bob.AccessToken, map[string]any{
			"kind": nil, "app_id": "chat.switchboard.test", "pushkey": "key1"})
		wantStatus(t, r, http.StatusOK, "")
		if n := len(list(bob)); n != 0 {
			t.Fatalf("kind null left %d pushers", n)
		}
		// Bad input changes nothing.
		for name, tc := range map[string]struct {
			body any
			code string
		}{
			"not json":    {"{", "M_NOT_JSON"},
			"no pushkey":  {map[string]any{"kind": "http", "app_id": "a"}, "M_MISSING_PARAM"},
			"no url":      {map[string]any{"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "x", "device_display_name": "y", "lang": "en", "data": map[string]any{}}, "M_MISSING_PARAM"},
			"wrong path":  {map[string]any{"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "x", "device_display_name": "y", "lang": "en", "data": map[string]any{"url": "https://x.org/notify"}}, "M_INVALID_PARAM"},
			"bad scheme":  {map[string]any{"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "x", "device_display_name": "y", "lang": "en", "data": map[string]any{"url": "file:///_matrix/push/v1/notify"}}, "M_INVALID_PARAM"},
			"email kind":  {map[string]any{"kind": "email", "app_id": "m.email", "pushkey": "a@b.c", "app_display_name": "x", "device_display_name": "y", "lang": "en", "data": map[string]any{}}, "M_INVALID_PARAM"},
			"data string": {map[string]any{"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "x", "device_display_name": "y", "lang": "en", "data": "x"}, "M_BAD_JSON"},
		} {
			r := ts.do(t, http.MethodPost, "/_matrix/client/v3/pushers/set", alice.AccessToken, tc.body)
			if r.Status != http.StatusBadRequest || r.errcode() != tc.code {
				t.Errorf("%s: want 400 %s, got %d %s", name, tc.code, r.Status, r.Raw)
			}
		}
		if n := len(list(alice)); n != 1 {
			t.Fatalf("bad requests changed the pushers: %d", n)
		}
	})
}

func TestPushersRemovedOnLogoutAndKeptOnRestart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		dsn := b.Open(t)
		ts := newTestServer(t, b, pushOpts, func(c *Config) { c.Database = dsn })
		ts.user(t, "alice")
		phone := ts.login(t, "alice", "PHONE", "Phone")
		laptop := ts.login(t, "alice", "LAPTOP", "Laptop")
		setPusher(t, ts, phone, "phonekey", "https://push.example.org/_matrix/push/v1/notify", nil)
		setPusher(t, ts, laptop, "laptopkey", "https://push.example.org/_matrix/push/v1/notify", nil)
		wantStatus(t, ts.do(t, http.MethodPost, "/_matrix/client/v3/logout", phone.AccessToken, nil), http.StatusOK, "")
		// Restart on the same database: the laptop's pusher is still there.
		ts.Shutdown()
		if err := ts.Close(); err != nil {
			t.Fatal(err)
		}
		ts2 := newTestServer(t, b, pushOpts, func(c *Config) { c.Database = dsn })
		laptop2 := ts2.login(t, "alice", "LAPTOP", "Laptop")
		r := ts2.do(t, http.MethodGet, "/_matrix/client/v3/pushers", laptop2.AccessToken, nil)
		wantStatus(t, r, http.StatusOK, "")
		ps := r.Body["pushers"].([]any)
		if len(ps) != 1 || ps[0].(map[string]any)["pushkey"] != "laptopkey" {
			t.Fatalf("after logout of the phone and a restart: %s", r.Raw)
		}
	})
}

func TestPushCallInviteReachesGatewayWithHighPriority(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b, pushOpts)
		gw := newPushGateway(t)
		ctx := testCtx(t)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		room := directRoom(t, alice, bob)
		setPusher(t, ts, bob, "bobfull", gw.url(), nil)
		setPusher(t, ts, bob, "bobids", gw.url(), map[string]any{"format": "event_id_only"})
		resp, err := alice.SendMessageEvent(ctx, room, event.CallInvite, callInvite("call-1"))
		if err != nil {
			t.Fatal(err)
		}
		n := gw.waitEvent(t, resp.EventID, "bobfull")
		if n.Prio != "high" || n.Type != "m.call.invite" || n.Sender != string(alice.UserID) || n.RoomID != string(room) {
			t.Fatalf("call invite notification: %+v", n)
		}
		if n.Content["call_id"] != "call-1" || n.Content["offer"] == nil {
			t.Fatalf("the call's content did not reach the gateway: %v", n.Content)
		}
		if n.Devices[0].AppID != "chat.switchboard.test" || n.Devices[0].Tweaks["sound"] != "ring" || n.Devices[0].Data["url"] != nil {
			t.Fatalf("device: %+v", n.Devices[0])
		}
		if n.Counts["unread"] != 1 {
			t.Fatalf("counts: %v", n.Counts)
		}
		ids := gw.waitEvent(t, resp.EventID, "bobids")
		if ids.Prio != "high" || ids.Type != "" || ids.Content != nil || ids.RoomID != string(room) {
			t.Fatalf("event_id_only notification carries more than IDs: %+v", ids)
		}
		// Alice sent it: she gets nothing.
		for _, g := range gw.all() {
			for _, d := range g.Devices {
				if d.Pushkey != "bobfull" && d.Pushkey != "bobids" {
					t.Fatalf("unexpected pushkey %s", d.Pushkey)
				}
			}
		}

		// /sync and /notifications count it until bob reads it.
		unread := func() int {
			s, err := bob.FullSyncRequest(ctx, mautrix.ReqSync{})
			if err != nil {
				t.Fatal(err)
			}
			return s.Rooms.Join[room].UnreadNotifications.NotificationCount
		}
		if u := unread(); u != 1 {
			t.Fatalf("unread_notifications.notification_count = %d, want 1", u)
		}
		r := ts.do(t, http.MethodGet, "/_matrix/client/v3/notifications", bob.AccessToken, nil)
		wantStatus(t, r, http.StatusOK, "")
		ns := r.Body["notifications"].([]any)
		// Newest first: the call, unread; then bob's invite, read by his join.
		if len(ns) != 2 || ns[0].(map[string]any)["read"] != false || ns[1].(map[string]any)["read"] != true || ns[0].(map[string]any)["event"].(map[string]any)["event_id"] != string(resp.EventID) {
			t.Fatalf("/notifications: %s", r.Raw)
		}
		if err := bob.SendReceipt(ctx, room, resp.EventID, event.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		if u := unread(); u != 0 {
			t.Fatalf("after the read receipt unread = %d", u)
		}
	})
}

func TestPushMutedRoomSendsNothing(t *testing.T) {
	ts := newTestServer(t, storagetest.Backend{Name: "sqlite"}, pushOpts)
	gw := newPushGateway(t)
	ctx := testCtx(t)
	alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
	muted, loud := directRoom(t, alice, bob), directRoom(t, alice, bob)
	setPusher(t, ts, bob, "bob", gw.url(), nil)
	// Element's "mute": a room rule with no actions; plus an override
	// dont_notify rule on a second condition, as older clients do.
	r := ts.do(t, http.MethodPut, "/_matrix/client/v3/pushrules/global/room/"+string(muted), bob.AccessToken, map[string]any{"actions": []any{}})
	wantStatus(t, r, http.StatusOK, "")
	r = ts.do(t, http.MethodPut, "/_matrix/client/v3/pushrules/global/override/mute-calls", bob.AccessToken, map[string]any{
		"actions":    []any{"dont_notify"},
		"conditions": []any{map[string]any{"kind": "event_match", "key": "room_id", "pattern": string(muted)}},
	})
	wantStatus(t, r, http.StatusOK, "")
	m1, err := alice.SendText(ctx, muted, "hello")
	if err != nil {
		t.Fatal(err)
	}
	m2, err := alice.SendMessageEvent(ctx, muted, event.CallInvite, callInvite("muted"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := alice.SendText(ctx, loud, "hello")
	if err != nil {
		t.Fatal(err)
	}
	// Events are evaluated in order: once the loud room's arrived, the
	// muted room's would have too.
	gw.waitEvent(t, l.EventID, "")
	for _, n := range gw.all() {
		if n.EventID == string(m1.EventID) || n.EventID == string(m2.EventID) || n.RoomID == string(muted) {
			t.Fatalf("a muted room notified: %+v", n)
		}
	}
}

func TestPushRejectedPushkeyIsRemoved(t *testing.T) {
	ts := newTestServer(t, storagetest.Backend{Name: "sqlite"}, pushOpts)
	gw := newPushGateway(t)
	ctx := testCtx(t)
	alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
	room := directRoom(t, alice, bob)
	gw.mu.Lock()
	gw.rejected["stale"] = true
	gw.mu.Unlock()
	setPusher(t, ts, bob, "stale", gw.url(), nil)
	setPusher(t, ts, bob, "fresh", gw.url(), nil)
	resp, err := alice.SendText(ctx, room, "one")
	if err != nil {
		t.Fatal(err)
	}
	gw.waitEvent(t, resp.EventID, "stale")
	testkit.Eventually(t, 20*time.Second, "the rejected pusher is removed", func() bool {
		r := ts.do(t, http.MethodGet, "/_matrix/client/v3/pushers", bob.AccessToken, nil)
		ps := r.Body["pushers"].([]any)
		return len(ps) == 1 && ps[0].(map[string]any)["pushkey"] == "fresh"
	})
	resp2, err := alice.SendText(ctx, room, "two")
	if err != nil {
		t.Fatal(err)
	}
	gw.waitEvent(t, resp2.EventID, "fresh")
	for _, n := range gw.all() {
		if n.EventID == string(resp2.EventID) && n.Devices[0].Pushkey == "stale" {
			t.Fatal("a rejected pushkey was sent to again")
		}
	}
}

func TestPushGatewayOutageDelaysButLosesNothing(t *testing.T) {
	ts := newTestServer(t, storagetest.Backend{Name: "sqlite"}, pushOpts)
	gw := newPushGateway(t)
	ctx := testCtx(t)
	alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
	room := directRoom(t, alice, bob)
	setPusher(t, ts, bob, "bob", gw.url(), nil)
	gw.down.Store(true)
	var sent []id.EventID
	for i := 0; i < 5; i++ {
		resp, err := alice.SendText(ctx, room, "while down")
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, resp.EventID)
	}
	testkit.Eventually(t, 20*time.Second, "the server retries the gateway", func() bool { return gw.failed.Load() >= 3 })
	if n := len(gw.all()); n != 0 {
		t.Fatalf("a down gateway accepted %d", n)
	}
	gw.down.Store(false)
	for _, e := range sent {
		gw.waitEvent(t, e, "bob")
	}
	got := gw.all()
	for i, e := range sent {
		if got[i].EventID != string(e) {
			t.Fatalf("notification %d is %s, want %s (order or duplicates)", i, got[i].EventID, e)
		}
	}
	if got[len(sent)-1].Counts["unread"] != len(sent) {
		t.Fatalf("last count %v, want %d", got[len(sent)-1].Counts, len(sent))
	}
}

func TestPushGatewayOnLoopbackRefusedByDefault(t *testing.T) {
	ts := newTestServer(t, storagetest.Backend{Name: "sqlite"}, func(c *Config) { c.Push.RetryMin = 20 * time.Millisecond })
	gw := newPushGateway(t)
	ctx := testCtx(t)
	alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
	room := directRoom(t, alice, bob)
	setPusher(t, ts, bob, "bob", gw.url(), nil)
	resp, err := alice.SendText(ctx, room, "hi")
	if err != nil {
		t.Fatal(err)
	}
	// The notification is stored (counted) but never reaches loopback.
	testkit.Eventually(t, 20*time.Second, "the notification is counted", func() bool {
		n, _, err := ts.db.UnreadCounts(ctx, string(bob.UserID), string(room))
		return err == nil && n == 1
	})
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if len(gw.all()) != 0 {
			t.Fatalf("a gateway on loopback was reached without allow_cidrs: %v", resp.EventID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPushFederatedCallInvite(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb := startFedNode(t, b), startFedNode(t, b, pushOpts)
		ctx := testCtx(t)
		gw := newPushGateway(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		bobSync := newFedSyncer(t, bob)
		room := joinAcross(t, ctx, alice, bob, bobSync)
		setPusher(t, &testServer{Server: bb.srv, URL: bb.URL}, bob, "bob", gw.url(), nil)
		resp, err := alice.SendMessageEvent(ctx, room, event.CallInvite, callInvite("fed-call"))
		if err != nil {
			t.Fatal(err)
		}
		n := gw.waitEvent(t, resp.EventID, "bob")
		if n.Prio != "high" || n.Type != "m.call.invite" || n.Content["call_id"] != "fed-call" || n.Sender != string(alice.UserID) {
			t.Fatalf("federated call invite notification: %+v", n)
		}
	})
}

// A notification is stored just after its event: an incremental /sync
// that already had the event still gets the room's new unread count.
func TestPushUnreadCountReachesIncrementalSync(t *testing.T) {
	ts := newTestServer(t, storagetest.Backend{Name: "sqlite"}, pushOpts)
	ctx := testCtx(t)
	alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
	room := directRoom(t, alice, bob)
	first, err := bob.FullSyncRequest(ctx, mautrix.ReqSync{})
	if err != nil {
		t.Fatal(err)
	}
	since := first.NextBatch
	if _, err := alice.SendText(ctx, room, "count me"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := bob.FullSyncRequest(ctx, mautrix.ReqSync{Since: since, Timeout: 5000})
		if err != nil {
			t.Fatal(err)
		}
		since = resp.NextBatch
		if jr, ok := resp.Rooms.Join[room]; ok && jr.UnreadNotifications != nil && jr.UnreadNotifications.NotificationCount == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the unread count never reached /sync")
		}
	}
}

// TestPushRetryFollowsTheClock: the retry after a gateway failure waits on
// the server's clock. With a minute's backoff and a fake clock, the
// notification arrives as soon as the test moves the clock on, long
// before a wall-clock minute.
func TestPushRetryFollowsTheClock(t *testing.T) {
	clk := clock.NewFake(time.Now())
	ts := newTestServer(t, storagetest.Backend{Name: "sqlite"}, func(c *Config) {
		pushOpts(c)
		c.Push.RetryMin, c.Push.RetryMax = time.Minute, time.Hour
		c.Clock = clk
	})
	gw := newPushGateway(t)
	ctx := testCtx(t)
	alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
	room := directRoom(t, alice, bob)
	setPusher(t, ts, bob, "bob", gw.url(), nil)
	gw.down.Store(true)
	resp, err := alice.SendText(ctx, room, "while down")
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the gateway's first failure", func() bool { return gw.failed.Load() >= 1 })
	gw.down.Store(false)
	testkit.Eventually(t, 20*time.Second, "the notification after the clock moved on", func() bool {
		clk.Advance(time.Minute)
		for _, n := range gw.all() {
			if n.EventID == string(resp.EventID) {
				return true
			}
		}
		return false
	})
	if f := gw.failed.Load(); f != 1 {
		t.Fatalf("%d failed attempts, want 1 (a retry happened before the clock moved)", f)
	}
}
