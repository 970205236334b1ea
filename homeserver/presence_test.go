package homeserver

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	hsync "github.com/switchboard-chat/switchboard/homeserver/sync"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

const presencePath = "/_matrix/client/v3/presence/"

// presenceOf returns the content of user's m.presence event in a sync
// response, or nil.
func presenceOf(r *mautrix.RespSync, user id.UserID) map[string]any {
	for _, ev := range r.Presence.Events {
		if ev.Type == event.EphemeralEventPresence && ev.Sender == user {
			return ev.Content.Raw
		}
	}
	return nil
}

// TestPresence: a user's explicit presence and status message reach the
// users sharing a room with them through /sync (a waiting long-poll wakes
// for it) and GET .../status; syncing marks a user online, except over an
// explicit state; a user who stops syncing falls idle.
func TestPresence(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		clock := newTestClock()
		ts := newTestServer(t, b, func(c *Config) { c.Now = clock.Now })
		ctx := testCtx(t)
		alice, bob, carol := ts.user(t, "alice"), ts.user(t, "bob"), ts.user(t, "carol")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		// Bob's first sync marks him online; he sees himself.
		first, err := bob.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		if p := presenceOf(first, bob.UserID); p == nil || p["presence"] != "online" || p["currently_active"] != true {
			t.Fatalf("bob's initial sync: own presence %v", p)
		}

		// A long-poll waiting when Alice sets her presence returns with it.
		type result struct {
			r   *mautrix.RespSync
			err error
		}
		done := make(chan result, 1)
		go func() {
			r, err := bob.SyncRequest(ctx, 30000, first.NextBatch, "", false, "")
			done <- result{r, err}
		}()
		// Let the long-poll start waiting: poll until the sync serial
		// is seen by a listener (Listen registers a waiter on bob's key).
		waitForWaiter(t, ts.Server, string(bob.UserID))
		start := time.Now()
		if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: "at lunch"}); err != nil {
			t.Fatal(err)
		}
		res := <-done
		if res.err != nil {
			t.Fatal(res.err)
		}
		if waited := time.Since(start); waited > 10*time.Second {
			t.Fatalf("the long-poll took %v to return", waited)
		}
		p := presenceOf(res.r, alice.UserID)
		if p == nil || p["presence"] != "unavailable" || p["status_msg"] != "at lunch" {
			t.Fatalf("bob's sync after alice's PUT: alice's presence %v (events %+v)", p, res.r.Presence.Events)
		}
		since := res.r.NextBatch

		got, err := bob.GetPresence(ctx, alice.UserID)
		if err != nil || got.Presence != event.PresenceUnavailable || got.StatusMsg != "at lunch" {
			t.Fatalf("GET alice's presence = %+v, %v", got, err)
		}

		// Alice syncing does not turn her explicit "unavailable" online,
		// and set_presence=offline leaves it as it is.
		if _, err := alice.SyncRequest(ctx, 0, "", "", false, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SyncRequest(ctx, 0, "", "", false, event.PresenceOffline); err != nil {
			t.Fatal(err)
		}
		if got, err := bob.GetPresence(ctx, alice.UserID); err != nil || got.Presence != event.PresenceUnavailable {
			t.Fatalf("after alice's syncs: %+v, %v", got, err)
		}

		// Carol joins and syncs: bob sees her online. The same sync token
		// does not hand out alice's unchanged presence again.
		if _, err := carol.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		if _, err := carol.SyncRequest(ctx, 0, "", "", false, ""); err != nil {
			t.Fatal(err)
		}
		since = syncUntil(t, bob, since, func(r *mautrix.RespSync) bool {
			if presenceOf(r, alice.UserID) != nil {
				t.Fatalf("alice's unchanged presence sent again: %+v", r.Presence.Events)
			}
			p := presenceOf(r, carol.UserID)
			return p != nil && p["presence"] == "online"
		})

		// Carol stops syncing: past the idle time she reads unavailable;
		// her next sync makes her online again.
		clock.Advance(presenceIdleAfter + time.Minute)
		since = syncUntil(t, bob, since, func(r *mautrix.RespSync) bool {
			p := presenceOf(r, carol.UserID)
			return p != nil && p["presence"] == "unavailable"
		})
		if _, err := carol.SyncRequest(ctx, 0, "", "", false, ""); err != nil {
			t.Fatal(err)
		}
		syncUntil(t, bob, since, func(r *mautrix.RespSync) bool {
			p := presenceOf(r, carol.UserID)
			return p != nil && p["presence"] == "online"
		})
	})
}

// waitForWaiter polls until a /sync long-poll listens on key.
func waitForWaiter(t *testing.T, s *Server, key string) {
	t.Helper()
	n, ok := s.notifier.(*hsync.LocalNotifier)
	if !ok {
		t.Fatalf("notifier is %T", s.notifier)
	}
	testkit.Eventually(t, 10*time.Second, "a /sync long-poll waiting on "+key, func() bool { return n.Waiting(key) > 0 })
}

// TestPresenceBadInput: the presence endpoints and /sync's set_presence
// refuse bad input with the spec's error codes and change nothing.
func TestPresenceBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		tok := string(alice.AccessToken)
		mine := presencePath + url.PathEscape(string(alice.UserID)) + "/status"
		for _, tc := range []struct {
			name   string
			path   string
			body   any
			status int
			code   string
		}{
			{"someone else's", presencePath + url.PathEscape(string(bob.UserID)) + "/status", map[string]any{"presence": "online"}, http.StatusForbidden, "M_FORBIDDEN"},
			{"unknown state", mine, map[string]any{"presence": "busy"}, http.StatusBadRequest, "M_INVALID_PARAM"},
			{"state not a string", mine, map[string]any{"presence": 1}, http.StatusBadRequest, "M_BAD_JSON"},
			{"no state", mine, map[string]any{"status_msg": "hi"}, http.StatusBadRequest, "M_MISSING_PARAM"},
			{"status_msg not a string", mine, map[string]any{"presence": "online", "status_msg": []int{1}}, http.StatusBadRequest, "M_BAD_JSON"},
			{"status_msg too long", mine, map[string]any{"presence": "online", "status_msg": strings.Repeat("x", maxStatusMsg+1)}, http.StatusBadRequest, "M_INVALID_PARAM"},
			{"not JSON", mine, "{presence", http.StatusBadRequest, "M_NOT_JSON"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantStatus(t, ts.do(t, http.MethodPut, tc.path, tok, tc.body), tc.status, tc.code)
			})
		}
		if _, ok := ts.eph.Presence(string(alice.UserID)); ok {
			t.Fatal("a refused PUT recorded presence")
		}
		wantStatus(t, ts.do(t, http.MethodGet, "/_matrix/client/v3/sync?set_presence=busy", tok, nil), http.StatusBadRequest, "M_INVALID_PARAM")
		if _, ok := ts.eph.Presence(string(alice.UserID)); ok {
			t.Fatal("a refused sync recorded presence")
		}
		// Reading: a user sharing no room, an unknown user, not a user ID.
		wantStatus(t, ts.do(t, http.MethodGet, presencePath+url.PathEscape(string(bob.UserID))+"/status", tok, nil), http.StatusForbidden, "M_FORBIDDEN")
		wantStatus(t, ts.do(t, http.MethodGet, presencePath+url.PathEscape(string(userID("nobody")))+"/status", tok, nil), http.StatusNotFound, "M_NOT_FOUND")
		wantStatus(t, ts.do(t, http.MethodGet, presencePath+"alice/status", tok, nil), http.StatusBadRequest, "M_INVALID_PARAM")
		// One's own presence reads offline before anything is set.
		r := ts.do(t, http.MethodGet, mine, tok, nil)
		wantStatus(t, r, http.StatusOK, "")
		if r.Body["presence"] != "offline" {
			t.Fatalf("own presence before any = %s", r.Raw)
		}
		// No access token.
		wantStatus(t, ts.do(t, http.MethodPut, mine, "", map[string]any{"presence": "online"}), http.StatusUnauthorized, "M_MISSING_TOKEN")
	})
}

// FuzzParsePresenceBody: no panic; an accepted body has a valid state and
// a bounded status message.
func FuzzParsePresenceBody(f *testing.F) {
	for _, s := range []string{`{"presence":"online"}`, `{"presence":"unavailable","status_msg":"x"}`, `{"presence":"busy"}`,
		`{"presence":null}`, `{}`, `[]`, `{"presence":"offline","status_msg":null}`, `nope`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parsePresenceBody(body)
		if err != nil {
			return
		}
		if !validPresence(req.Presence) || req.StatusMsg != nil && len(*req.StatusMsg) > maxStatusMsg {
			t.Fatalf("accepted %q as %+v", body, req)
		}
	})
}
