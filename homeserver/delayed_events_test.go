package homeserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// delayedRoom makes a room of alice's with bob joined and returns its ID.
func delayedRoom(t *testing.T, alice, bob *mautrix.Client) string {
	t.Helper()
	ctx := testCtx(t)
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if bob != nil {
		if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
	}
	return room.RoomID.String()
}

// stateContent returns the current content of a state event as raw JSON,
// or "" when there is none.
func (ts *testServer) stateContent(t *testing.T, token, room, evType, key string) string {
	t.Helper()
	r := ts.do(t, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/state/"+evType+"/"+url.PathEscape(key), token, nil)
	if r.Status == http.StatusNotFound {
		return ""
	}
	wantStatus(t, r, http.StatusOK, "")
	return string(r.Raw)
}

// delayedIDs lists the delay IDs the token's user has scheduled.
func (ts *testServer) delayedIDs(t *testing.T, token string) []string {
	t.Helper()
	r := ts.do(t, http.MethodGet, delayedPrefix, token, nil)
	wantStatus(t, r, http.StatusOK, "")
	var ids []string
	list, _ := r.Body["scheduled"].([]any)
	for _, it := range list {
		m, _ := it.(map[string]any)
		id, _ := m["delay_id"].(string)
		ids = append(ids, id)
	}
	return ids
}

// TestDelayedEvents drives MSC4140 with a clock the test holds: a delayed
// leave is sent when due and not before, restart pushes it back, cancel
// drops it, send sends it at once, and errors come in Matrix terms.
func TestDelayedEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		clk := newTestClock()
		ts := newTestServer(t, b, func(c *Config) { c.Now = clk.Now; c.RTC.MaxDelay = time.Hour })
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		room := delayedRoom(t, alice, bob)
		key := "_@bob:test.local_" + bob.DeviceID.String() + "_m.call"
		joined := map[string]any{"application": "m.call", "device_id": bob.DeviceID.String()}

		// Element Call's order: schedule the leave, then join.
		r := ts.do(t, http.MethodPut, callMemberPath(room, key)+"?org.matrix.msc4140.delay=10000", bob.AccessToken, map[string]any{})
		wantStatus(t, r, http.StatusOK, "")
		leaveID, _ := r.Body["delay_id"].(string)
		if leaveID == "" {
			t.Fatalf("no delay_id: %s", r.Raw)
		}
		wantStatus(t, ts.do(t, http.MethodPut, callMemberPath(room, key), bob.AccessToken, joined), http.StatusOK, "")
		if ids := ts.delayedIDs(t, bob.AccessToken); len(ids) != 1 || ids[0] != leaveID {
			t.Fatalf("scheduled %v, want [%s] (the owner's own send must not cancel it)", ids, leaveID)
		}
		if ids := ts.delayedIDs(t, alice.AccessToken); len(ids) != 0 {
			t.Fatalf("alice sees bob's delayed events: %v", ids)
		}

		// Not due yet: nothing happens.
		// pass runs the scheduler's work here, synchronously.
		clk.Advance(9 * time.Second)
		ts.delayed.pass(testCtx(t))
		// Restart at 9 s: due at 19 s now.
		wantStatus(t, ts.do(t, http.MethodPost, delayedPrefix+"/"+leaveID+"/restart", bob.AccessToken, nil), http.StatusOK, "")
		clk.Advance(9 * time.Second)
		if wait := ts.delayed.pass(testCtx(t)); wait != time.Second {
			t.Errorf("scheduler would sleep %v, want 1s (until the restarted leave is due)", wait)
		}
		if c := ts.stateContent(t, bob.AccessToken, room, "org.matrix.msc3401.call.member", key); c == "{}" {
			t.Fatal("delayed leave sent before it was due (restart ignored)")
		}
		clk.Advance(2 * time.Second)
		ts.delayed.poke()
		testkit.Eventually(t, 20*time.Second, "delayed leave sent", func() bool {
			return ts.stateContent(t, bob.AccessToken, room, "org.matrix.msc3401.call.member", key) == "{}"
		})
		if ids := ts.delayedIDs(t, bob.AccessToken); len(ids) != 0 {
			t.Fatalf("sent delayed event still scheduled: %v", ids)
		}
		wantStatus(t, ts.do(t, http.MethodPost, delayedPrefix+"/"+leaveID+"/restart", bob.AccessToken, nil), http.StatusNotFound, "M_NOT_FOUND")

		// Cancel (older body form, authenticated).
		r = ts.do(t, http.MethodPut, "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/send/m.room.message/t1?org.matrix.msc4140.delay=5000",
			bob.AccessToken, map[string]any{"msgtype": "m.text", "body": "later"})
		wantStatus(t, r, http.StatusOK, "")
		msgID, _ := r.Body["delay_id"].(string)
		wantStatus(t, ts.do(t, http.MethodPost, delayedPrefix+"/"+msgID, alice.AccessToken, map[string]any{"action": "cancel"}),
			http.StatusNotFound, "M_NOT_FOUND") // not alice's
		wantStatus(t, ts.do(t, http.MethodPost, delayedPrefix+"/"+msgID, bob.AccessToken, map[string]any{"action": "cancel"}), http.StatusOK, "")
		if ids := ts.delayedIDs(t, bob.AccessToken); len(ids) != 0 {
			t.Fatalf("cancelled delayed event still scheduled: %v", ids)
		}

		// A retried send (same transaction) is one delayed event.
		retry := "/_matrix/client/v3/rooms/" + url.PathEscape(room) + "/send/m.room.message/t2?org.matrix.msc4140.delay=5000"
		r1 := ts.do(t, http.MethodPut, retry, bob.AccessToken, map[string]any{"msgtype": "m.text", "body": "once"})
		r2 := ts.do(t, http.MethodPut, retry, bob.AccessToken, map[string]any{"msgtype": "m.text", "body": "once"})
		if r1.Body["delay_id"] == nil || r1.Body["delay_id"] != r2.Body["delay_id"] {
			t.Fatalf("retried send: delay IDs %v and %v", r1.Body["delay_id"], r2.Body["delay_id"])
		}
		if ids := ts.delayedIDs(t, bob.AccessToken); len(ids) != 1 {
			t.Fatalf("retried send scheduled %v", ids)
		}
		wantStatus(t, ts.do(t, http.MethodPost, delayedPrefix+"/"+r1.Body["delay_id"].(string)+"/cancel", "", nil), http.StatusOK, "")

		// Send now, unauthenticated (the delay ID is the secret).
		r = ts.do(t, http.MethodPut, callMemberPath(room, key)+"?org.matrix.msc4140.delay=60000", bob.AccessToken, joined)
		sendID, _ := r.Body["delay_id"].(string)
		wantStatus(t, ts.do(t, http.MethodPost, delayedPrefix+"/"+sendID+"/send", "", nil), http.StatusOK, "")
		if c := ts.stateContent(t, bob.AccessToken, room, "org.matrix.msc3401.call.member", key); c == "{}" {
			t.Fatal("send action did not send")
		}

		// Errors.
		big := ts.do(t, http.MethodPut, callMemberPath(room, key)+"?org.matrix.msc4140.delay=3600001", bob.AccessToken, map[string]any{})
		wantStatus(t, big, http.StatusBadRequest, "M_UNKNOWN")
		if big.Body["org.matrix.msc4140.errcode"] != "M_MAX_DELAY_EXCEEDED" || big.Body["org.matrix.msc4140.max_delay"] != float64(3600000) {
			t.Fatalf("max delay answer %s", big.Raw)
		}
		for _, q := range []string{"-1", "abc", "1e3", ""} {
			wantStatus(t, ts.do(t, http.MethodPut, callMemberPath(room, key)+"?org.matrix.msc4140.delay="+q, bob.AccessToken, map[string]any{}),
				http.StatusBadRequest, "M_INVALID_PARAM")
		}
		wantStatus(t, ts.do(t, http.MethodPut, callMemberPath(room, "_@alice:test.local_X_m.call")+"?org.matrix.msc4140.delay=1000", bob.AccessToken, map[string]any{}),
			http.StatusForbidden, "M_FORBIDDEN")
		wantStatus(t, ts.do(t, http.MethodPut, "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/send/m.room.redaction/r1?org.matrix.msc4140.delay=1000",
			bob.AccessToken, map[string]any{"redacts": "$x"}), http.StatusBadRequest, "M_INVALID_PARAM")
		wantStatus(t, ts.do(t, http.MethodPost, delayedPrefix+"/nope/restart", "", nil), http.StatusNotFound, "M_NOT_FOUND")
		wantStatus(t, ts.do(t, http.MethodPost, delayedPrefix+"/nope/explode", "", nil), http.StatusNotFound, "M_UNRECOGNIZED")
		wantStatus(t, ts.do(t, http.MethodPost, delayedPrefix+"/nope", bob.AccessToken, map[string]any{"action": "explode"}), http.StatusBadRequest, "M_INVALID_PARAM")
		wantStatus(t, ts.do(t, http.MethodPost, delayedPrefix+"/nope", bob.AccessToken, map[string]any{}), http.StatusBadRequest, "M_MISSING_PARAM")
		wantStatus(t, ts.do(t, http.MethodPost, delayedPrefix+"/nope", bob.AccessToken, "{not json"), http.StatusBadRequest, "M_NOT_JSON")
		wantStatus(t, ts.do(t, http.MethodGet, delayedPrefix, "", nil), http.StatusUnauthorized, "M_MISSING_TOKEN")
		if ids := ts.delayedIDs(t, bob.AccessToken); len(ids) != 0 {
			t.Fatalf("refused requests scheduled events: %v", ids)
		}
	})
}

// TestDelayedStateSuperseded: another user's state event at the same
// type and key cancels a pending delayed state event (MSC4140).
func TestDelayedStateSuperseded(t *testing.T) {
	b := storagetest.Backends(t)[0]
	clk := newTestClock()
	ts := newTestServer(t, b, func(c *Config) { c.Now = clk.Now })
	alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
	room := delayedRoom(t, alice, bob)
	topic := "/_matrix/client/v3/rooms/" + url.PathEscape(room) + "/state/m.room.topic/"
	r := ts.do(t, http.MethodPut, topic+"?org.matrix.msc4140.delay=5000", alice.AccessToken, map[string]any{"topic": "delayed"})
	wantStatus(t, r, http.StatusOK, "")
	other := ts.do(t, http.MethodPut, "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/state/m.room.name/?org.matrix.msc4140.delay=5000",
		alice.AccessToken, map[string]any{"name": "kept"})
	wantStatus(t, other, http.StatusOK, "")
	// Bob may not set the topic (state_default 50): a refused event
	// supersedes nothing.
	wantStatus(t, ts.do(t, http.MethodPut, topic, bob.AccessToken, map[string]any{"topic": "bob"}), http.StatusForbidden, "M_FORBIDDEN")
	if n := len(ts.delayedIDs(t, alice.AccessToken)); n != 2 {
		t.Fatalf("%d scheduled after a refused event, want 2", n)
	}
	// Promote bob, who then sets the topic: alice's delayed topic goes,
	// her delayed name stays.
	wantStatus(t, ts.do(t, http.MethodPut, "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/state/m.room.power_levels/", alice.AccessToken,
		map[string]any{"users": map[string]int{"@alice:test.local": 100, "@bob:test.local": 50}, "state_default": 50, "events_default": 0}), http.StatusOK, "")
	wantStatus(t, ts.do(t, http.MethodPut, topic, bob.AccessToken, map[string]any{"topic": "bob"}), http.StatusOK, "")
	ids := ts.delayedIDs(t, alice.AccessToken)
	if len(ids) != 1 || ids[0] != other.Body["delay_id"] {
		t.Fatalf("scheduled %v, want only the name's %v", ids, other.Body["delay_id"])
	}
	clk.Advance(6 * time.Second)
	ts.delayed.poke()
	testkit.Eventually(t, 20*time.Second, "delayed name sent", func() bool {
		return ts.stateContent(t, alice.AccessToken, room, "m.room.name", "") == `{"name":"kept"}`
	})
	if c := ts.stateContent(t, alice.AccessToken, room, "m.room.topic", ""); c != `{"topic":"bob"}` {
		t.Fatalf("topic %s: the cancelled delayed topic was sent", c)
	}
}

// TestDelayedEventRealClock: with the real clock the timer alone sends a
// delayed event (no poke).
func TestDelayedEventRealClock(t *testing.T) {
	ts := newTestServer(t, storagetest.Backends(t)[0])
	alice := ts.user(t, "alice")
	room := delayedRoom(t, alice, nil)
	key := "_@alice:test.local_" + alice.DeviceID.String() + "_m.call"
	wantStatus(t, ts.do(t, http.MethodPut, callMemberPath(room, key), alice.AccessToken, map[string]any{"application": "m.call"}), http.StatusOK, "")
	wantStatus(t, ts.do(t, http.MethodPut, callMemberPath(room, key)+"?org.matrix.msc4140.delay=300", alice.AccessToken, map[string]any{}), http.StatusOK, "")
	testkit.Eventually(t, 20*time.Second, "delayed leave sent by the timer", func() bool {
		return ts.stateContent(t, alice.AccessToken, room, "org.matrix.msc3401.call.member", key) == "{}"
	})
}

// TestDelayedEventsSurviveRestart: a delayed event scheduled before a
// restart is still listed after it, and sent once due.
func TestDelayedEventsSurviveRestart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		dsn := b.Open(t)
		clk := newTestClock()
		opts := func(c *Config) { c.Database = dsn; c.Now = clk.Now }
		first, url1 := startUnmanaged(t, b, opts)
		ts1 := &testServer{Server: first, URL: url1}
		alice := ts1.user(t, "alice")
		room := delayedRoom(t, alice, nil)
		key := "_@alice:test.local_" + alice.DeviceID.String() + "_m.call"
		wantStatus(t, ts1.do(t, http.MethodPut, callMemberPath(room, key), alice.AccessToken, map[string]any{"application": "m.call"}), http.StatusOK, "")
		r := ts1.do(t, http.MethodPut, callMemberPath(room, key)+"?org.matrix.msc4140.delay=30000", alice.AccessToken, map[string]any{})
		wantStatus(t, r, http.StatusOK, "")
		first.Shutdown()
		if err := first.Close(); err != nil {
			t.Fatal(err)
		}

		clk.Advance(10 * time.Second)
		ts2 := newTestServer(t, b, opts)
		if ids := ts2.delayedIDs(t, alice.AccessToken); len(ids) != 1 || ids[0] != r.Body["delay_id"] {
			t.Fatalf("after restart scheduled %v, want [%v]", ids, r.Body["delay_id"])
		}
		clk.Advance(25 * time.Second)
		ts2.delayed.poke()
		testkit.Eventually(t, 20*time.Second, "delayed leave sent after restart", func() bool {
			return ts2.stateContent(t, alice.AccessToken, room, "org.matrix.msc3401.call.member", key) == "{}"
		})
	})
}

// startUnmanaged starts a homeserver the test closes itself, serving on
// a loopback port until the test ends.
func startUnmanaged(t *testing.T, b storagetest.Backend, opts ...func(*Config)) (*Server, string) {
	t.Helper()
	probe := newTestConfig(t, b)
	for _, o := range opts {
		o(&probe)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := New(ctx, probe, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.ClientHandler())
	t.Cleanup(hs.Close)
	return s, hs.URL
}

// newTestConfig is newTestServer's config, for a server started by hand.
func newTestConfig(t *testing.T, b storagetest.Backend) Config {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		ServerName:   "test.local",
		Database:     b.Open(t),
		Registration: RegistrationOpen,
		SigningKey:   key,
		KeyID:        "ed25519:test",
		RateLimit:    RateLimitConfig{Disabled: true},
		Federation:   FederationConfig{Resolver: offlineResolver()},
	}
}

// TestDelayedStateSupersededFederated: a state event from another server
// cancels a local user's pending delayed event for the same state.
func TestDelayedStateSupersededFederated(t *testing.T) {
	b := storagetest.Backends(t)[0]
	a, bb := startFedNode(t, b), startFedNode(t, b)
	ctx := testCtx(t)
	alice, bob := a.user(t, "alice"), bb.user(t, "bob")
	bobSync := newFedSyncer(t, bob)
	room := joinAcross(t, ctx, alice, bob, bobSync).String()
	ta := &testServer{Server: a.srv, URL: a.URL}
	tb := &testServer{Server: bb.srv, URL: bb.URL}
	roomPath := "/_matrix/client/v3/rooms/" + url.PathEscape(room)
	wantStatus(t, ta.do(t, http.MethodPut, roomPath+"/state/m.room.power_levels/", alice.AccessToken,
		map[string]any{"users": map[string]int{alice.UserID.String(): 100, bob.UserID.String(): 50}, "state_default": 50, "events_default": 0}), http.StatusOK, "")
	r := ta.do(t, http.MethodPut, roomPath+"/state/m.room.topic/?org.matrix.msc4140.delay=600000", alice.AccessToken, map[string]any{"topic": "delayed"})
	wantStatus(t, r, http.StatusOK, "")
	// Bob's server must know of his new power before he may set the topic.
	testkit.Eventually(t, 20*time.Second, "bob's server sees the power levels", func() bool {
		pl := tb.stateContent(t, bob.AccessToken, room, "m.room.power_levels", "")
		return strings.Contains(pl, `"state_default":50`) && strings.Contains(pl, bob.UserID.String())
	})
	wantStatus(t, tb.do(t, http.MethodPut, roomPath+"/state/m.room.topic/", bob.AccessToken, map[string]any{"topic": "from B"}), http.StatusOK, "")
	testkit.Eventually(t, 20*time.Second, "alice's delayed topic cancelled by bob's", func() bool {
		return len(ta.delayedIDs(t, alice.AccessToken)) == 0
	})
	if c := ta.stateContent(t, alice.AccessToken, room, "m.room.topic", ""); c != `{"topic":"from B"}` {
		t.Fatalf("topic on alice's server: %s", c)
	}
}
