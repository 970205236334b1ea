package homeserver

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// visibleBodies is the message bodies a user reads with /messages (all of
// them: one page of 100), oldest first, and the status.
func visibleBodies(t *testing.T, ts *testServer, cli *mautrix.Client, room id.RoomID) ([]string, int) {
	t.Helper()
	r := ts.do(t, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+"/messages?dir=b&limit=100", cli.AccessToken, nil)
	if r.Status != http.StatusOK {
		return nil, r.Status
	}
	var out []string
	chunk, _ := r.Body["chunk"].([]any)
	for _, c := range chunk {
		ev, _ := c.(map[string]any)
		if ev["type"] != "m.room.message" {
			continue
		}
		content, _ := ev["content"].(map[string]any)
		body, _ := content["body"].(string)
		out = append(out, body)
	}
	slices.Reverse(out)
	return out, r.Status
}

// syncBodies is the message bodies of a room's timeline in an initial /sync
// (since "") or an incremental one.
func syncBodies(t *testing.T, cli *mautrix.Client, room id.RoomID, since ...string) []string {
	t.Helper()
	req := mautrix.ReqSync{Timeout: 0, FullState: len(since) == 0, FilterID: `{"room":{"timeline":{"limit":100},"include_leave":true}}`}
	if len(since) > 0 {
		req.Since = since[0]
	}
	resp, err := cli.FullSyncRequest(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var evs []*event.Event
	if jr, ok := resp.Rooms.Join[room]; ok {
		evs = jr.Timeline.Events
	} else if lr, ok := resp.Rooms.Leave[room]; ok {
		evs = lr.Timeline.Events
	}
	var out []string
	for _, e := range evs {
		if e.Type == event.EventMessage {
			out = append(out, e.Content.Raw["body"].(string))
		}
	}
	return out
}

// TestHistoryVisibility runs each history visibility setting with a user
// who was invited, joined, left and rejoined (bob), one invited who never
// joined (dave), one who joined late (erin) and one never in the room
// (carol), and checks what /messages, /sync, /event and /context give each
// (spec: Client-Server API, "History visibility").
func TestHistoryVisibility(t *testing.T) {
	type want struct {
		bobLeft, bobRejoined, dave, erin, carol []string // nil: 403
	}
	all := []string{"before invite", "while invited", "while joined", "after leave"}
	cases := map[string]want{
		"world_readable": {bobLeft: all, bobRejoined: append(all, "after rejoin"), dave: append(all, "after rejoin"), erin: append(all, "after rejoin"), carol: append(all, "after rejoin")},
		"shared":         {bobLeft: all[:3], bobRejoined: append(all, "after rejoin"), dave: []string{}, erin: append(all, "after rejoin"), carol: nil},
		"invited": {bobLeft: all[1:3], bobRejoined: []string{"while invited", "while joined", "after rejoin"},
			dave: append(all[1:], "after rejoin"), erin: []string{"after rejoin"}, carol: nil},
		"joined": {bobLeft: all[2:3], bobRejoined: []string{"while joined", "after rejoin"}, dave: []string{}, erin: []string{"after rejoin"}, carol: nil},
	}
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		for setting, w := range cases {
			t.Run(setting, func(t *testing.T) {
				alice, bob, carol, dave, erin := ts.user(t, "alice"+setting), ts.user(t, "bob"+setting), ts.user(t, "carol"+setting), ts.user(t, "dave"+setting), ts.user(t, "erin"+setting)
				created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
				if err != nil {
					t.Fatal(err)
				}
				room := created.RoomID
				send := func(body string) id.EventID {
					r, err := alice.SendText(ctx, room, body)
					if err != nil {
						t.Fatal(err)
					}
					return r.EventID
				}
				if _, err := alice.SendStateEvent(ctx, room, event.StateHistoryVisibility, "", map[string]any{"history_visibility": setting}); err != nil {
					t.Fatal(err)
				}
				first := send("before invite")
				for _, u := range []*mautrix.Client{bob, dave} {
					if _, err := alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: u.UserID}); err != nil {
						t.Fatal(err)
					}
				}
				send("while invited")
				if _, err := bob.JoinRoomByID(ctx, room); err != nil {
					t.Fatal(err)
				}
				send("while joined")
				if _, err := bob.LeaveRoom(ctx, room); err != nil {
					t.Fatal(err)
				}
				send("after leave")

				got, status := visibleBodies(t, ts, bob, room)
				if status != http.StatusOK || !slices.Equal(got, w.bobLeft) {
					t.Fatalf("bob after leaving reads %q (%d), want %q", got, status, w.bobLeft)
				}
				// A left room's /sync timeline ends at the leave.
				wantSync := slices.DeleteFunc(slices.Clone(w.bobLeft), func(s string) bool { return s == "after leave" })
				if got := syncBodies(t, bob, room); !slices.Equal(got, wantSync) && !(len(got) == 0 && len(wantSync) == 0) {
					t.Fatalf("bob's left room in /sync shows %q, want %q", got, wantSync)
				}

				if _, err := bob.JoinRoomByID(ctx, room); err != nil {
					t.Fatal(err)
				}
				erinBefore, err := erin.SyncRequest(ctx, 0, "", "", false, "")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := erin.JoinRoomByID(ctx, room); err != nil {
					t.Fatal(err)
				}
				send("after rejoin")
				// Erin's incremental /sync brings the room she joined with
				// the history she may see, no more.
				if got := syncBodies(t, erin, room, erinBefore.NextBatch); !slices.Equal(got, w.erin) {
					t.Fatalf("erin's incremental /sync after joining shows %q, want %q", got, w.erin)
				}
				for _, c := range []struct {
					name string
					cli  *mautrix.Client
					want []string
				}{{"bob after rejoining", bob, w.bobRejoined}, {"dave (invited, never joined)", dave, w.dave}, {"erin (joined late)", erin, w.erin}, {"carol (never a member)", carol, w.carol}} {
					got, status := visibleBodies(t, ts, c.cli, room)
					if c.want == nil {
						if status != http.StatusForbidden {
							t.Fatalf("%s: /messages answered %d, want 403", c.name, status)
						}
						continue
					}
					if status != http.StatusOK || !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
						t.Fatalf("%s reads %q (%d), want %q", c.name, got, status, c.want)
					}
				}
				// The joined users' initial /sync timelines agree with /messages.
				for _, c := range []struct {
					name string
					cli  *mautrix.Client
					want []string
				}{{"bob", bob, w.bobRejoined}, {"erin", erin, w.erin}} {
					if got := syncBodies(t, c.cli, room); !slices.Equal(got, c.want) {
						t.Fatalf("%s's initial /sync timeline shows %q, want %q", c.name, got, c.want)
					}
				}
				// /event and /context on the first message follow the rule.
				firstVisible := slices.Contains(w.erin, "before invite")
				r := ts.do(t, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+"/event/"+url.PathEscape(string(first)), erin.AccessToken, nil)
				if firstVisible && r.Status != http.StatusOK || !firstVisible && (r.Status != http.StatusNotFound || r.errcode() != "M_NOT_FOUND") {
					t.Fatalf("erin's /event on the first message: %d %s (visible: %v)", r.Status, r.Raw, firstVisible)
				}
				r = ts.do(t, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+"/context/"+url.PathEscape(string(first)), erin.AccessToken, nil)
				if firstVisible != (r.Status == http.StatusOK) {
					t.Fatalf("erin's /context on the first message: %d %s (visible: %v)", r.Status, r.Raw, firstVisible)
				}
				// State and members: carol reads them only in a world_readable room.
				for _, path := range []string{"/state", "/members"} {
					r := ts.do(t, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+path, carol.AccessToken, nil)
					if (setting == "world_readable") != (r.Status == http.StatusOK) {
						t.Fatalf("carol's %s: %d %s", path, r.Status, r.Raw)
					}
				}
			})
		}
	})
}

// TestHistoryVisibilityLeftUserState checks that one who left reads the
// room's state as it was when they left, not changes made afterwards.
func TestHistoryVisibilityLeftUserState(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Before"})
		if err != nil {
			t.Fatal(err)
		}
		room := created.RoomID
		if _, err := bob.JoinRoomByID(ctx, room); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.LeaveRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SendStateEvent(ctx, room, event.StateRoomName, "", map[string]any{"name": "After"}); err != nil {
			t.Fatal(err)
		}
		r := ts.do(t, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+"/state/m.room.name/", bob.AccessToken, nil)
		if r.Status != http.StatusOK || r.Body["name"] != "Before" {
			t.Fatalf("bob's view of the name after leaving: %d %s", r.Status, r.Raw)
		}
		r = ts.do(t, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+"/state", bob.AccessToken, nil)
		if r.Status != http.StatusOK || strings.Contains(string(r.Raw), `"After"`) || !strings.Contains(string(r.Raw), `"Before"`) {
			t.Fatalf("bob's /state after leaving: %d %s", r.Status, r.Raw)
		}
	})
}

// TestHistoryVisibilitySlidingSync: a late joiner's sliding sync timeline
// of a joined-only room holds nothing from before the join, of a shared
// room everything.
func TestHistoryVisibilitySlidingSync(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		for _, setting := range []string{"joined", "shared"} {
			created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
			if err != nil {
				t.Fatal(err)
			}
			room := created.RoomID
			if _, err := alice.SendStateEvent(ctx, room, event.StateHistoryVisibility, "", map[string]any{"history_visibility": setting}); err != nil {
				t.Fatal(err)
			}
			if _, err := alice.SendText(ctx, room, "before bob"); err != nil {
				t.Fatal(err)
			}
			if _, err := bob.JoinRoomByID(ctx, room); err != nil {
				t.Fatal(err)
			}
			r := slide(t, ts, bob, "", 0, map[string]any{"conn_id": setting, "room_subscriptions": map[string]any{string(room): map[string]any{"timeline_limit": 20}}})
			sr, ok := r.Rooms[string(room)]
			if !ok {
				t.Fatalf("%s: no room in the sliding sync answer", setting)
			}
			sawBefore := false
			for _, e := range sr.Timeline {
				sawBefore = sawBefore || strings.Contains(string(e.Content), "before bob")
			}
			if sawBefore != (setting == "shared") {
				t.Fatalf("%s: bob's sliding sync timeline (%d events) shows the message from before his join: %v", setting, len(sr.Timeline), sawBefore)
			}
		}
	})
}
