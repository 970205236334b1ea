package homeserver

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// raw is node n seen by a client without a Matrix library (exact status
// codes and bodies).
func (n *fedNode) raw() *testServer { return &testServer{Server: n.srv, URL: n.URL} }

// wantRemoteError checks one client-visible answer: status, errcode, a
// message that is words (no Go byte slice, no dial or resolver detail).
func wantRemoteError(t *testing.T, what string, r rawResp, status int, errcode string, mentions ...string) {
	t.Helper()
	msg, _ := r.Body["error"].(string)
	t.Logf("%s: %d %s", what, r.Status, r.Raw)
	if r.Status != status || r.errcode() != errcode {
		t.Fatalf("%s: %d %s, want %d %s", what, r.Status, r.Raw, status, errcode)
	}
	for _, bad := range []string{"contents=[", "dial ", "lookup ", "resolver", "wrapped=", "Failed to GET"} {
		if strings.Contains(msg, bad) {
			t.Fatalf("%s: the message leaks %q: %s", what, bad, msg)
		}
	}
	for _, m := range mentions {
		if !strings.Contains(msg, m) {
			t.Fatalf("%s: the message %q does not mention %q", what, msg, m)
		}
	}
}

// TestFederationRemoteRefusals joins, invites and looks up across two
// servers where the other server refuses or cannot be reached: the client
// sees the remote errcode with a readable message (issue 15 item 2), and
// an unreachable server is 502 naming it with no transport detail (issue
// 20 item 5).
func TestFederationRemoteRefusals(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		p := joinedPair(t, b)
		a, bb, alice, bob, room, ctx := p.a, p.b, p.alice, p.bob, p.room, testCtx(t)
		carol := bb.user(t, "carol")
		join := func(roomID id.RoomID, via string) rawResp {
			return bb.raw().do(t, http.MethodPost, "/_matrix/client/v3/join/"+url.PathEscape(string(roomID))+"?via="+url.QueryEscape(via), carol.AccessToken, map[string]any{})
		}

		t.Run("invite only, no invite", func(t *testing.T) {
			closed, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
			if err != nil {
				t.Fatal(err)
			}
			r := join(closed.RoomID, a.name)
			wantRemoteError(t, "joining an invite-only room", r, http.StatusForbidden, "M_FORBIDDEN", a.name)
		})

		t.Run("banned", func(t *testing.T) {
			if _, err := alice.BanUser(ctx, room, &mautrix.ReqBanUser{UserID: bob.UserID, Reason: "spam"}); err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, 20*time.Second, "B sees the ban", func() bool {
				m, err := bb.srv.db.Membership(ctx, string(room), string(bob.UserID))
				return err == nil && m == "ban"
			})
			r := bb.raw().do(t, http.MethodPost, "/_matrix/client/v3/join/"+url.PathEscape(string(room))+"?via="+url.QueryEscape(a.name), bob.AccessToken, map[string]any{})
			wantRemoteError(t, "joining while banned", r, http.StatusForbidden, "M_FORBIDDEN")
		})

		t.Run("unsupported room version", func(t *testing.T) {
			pub, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
			if err != nil {
				t.Fatal(err)
			}
			// A answers make_join for a room version B does not support.
			a.tamper.set(func(path string, body []byte) []byte {
				if !strings.Contains(path, "/make_join/") {
					return body
				}
				return bytes.Replace(body, []byte(`"room_version":"11"`), []byte(`"room_version":"9"`), 1)
			})
			t.Cleanup(func() { a.tamper.set(func(_ string, body []byte) []byte { return body }) })
			r := join(pub.RoomID, a.name)
			wantRemoteError(t, "joining a room of an unsupported version", r, http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION")
			if r.Body["room_version"] != "9" {
				t.Fatalf("the error does not name the room version: %s", r.Raw)
			}
		})

		t.Run("unreachable", func(t *testing.T) {
			r := join("!nowhere:unreachable.example.org", "")
			wantRemoteError(t, "joining through an unreachable server", r, http.StatusBadGateway, "M_UNKNOWN", "could not reach unreachable.example.org")
			r = join("!nowhere:127.0.0.1:1", "")
			wantRemoteError(t, "joining through a closed port", r, http.StatusBadGateway, "M_UNKNOWN", "could not reach 127.0.0.1:1")
		})

		t.Run("unknown room", func(t *testing.T) {
			r := join(id.RoomID("!unknown:"+a.name), a.name)
			wantRemoteError(t, "joining a room the server does not know", r, http.StatusNotFound, "M_NOT_FOUND", a.name)
		})

		t.Run("invite unknown user", func(t *testing.T) {
			// B answers PUT /v2/invite with 403 (a 404 would make the
			// inviting library fall back to /v1/invite and report
			// M_UNRECOGNIZED instead of the reason).
			r := a.raw().do(t, http.MethodPost, "/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+"/invite", alice.AccessToken,
				map[string]any{"user_id": "@nobody:" + bb.name})
			wantRemoteError(t, "inviting an unknown user", r, http.StatusForbidden, "M_FORBIDDEN", "Unknown user")
			r = a.raw().do(t, http.MethodPost, "/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+"/invite", alice.AccessToken,
				map[string]any{"user_id": "@someone:unreachable.example.org"})
			wantRemoteError(t, "inviting a user of an unreachable server", r, http.StatusBadGateway, "M_UNKNOWN", "could not reach unreachable.example.org")
		})

		t.Run("remote alias", func(t *testing.T) {
			alias := "#lobby:" + a.name
			if _, err := alice.CreateAlias(ctx, id.RoomAlias(alias), room); err != nil {
				t.Fatal(err)
			}
			r := bb.raw().do(t, http.MethodGet, "/_matrix/client/v3/directory/room/"+url.PathEscape(alias), carol.AccessToken, nil)
			if r.Status != http.StatusOK || r.Body["room_id"] != string(room) {
				t.Fatalf("remote alias lookup: %d %s", r.Status, r.Raw)
			}
			var body struct {
				Servers []string `json:"servers"`
			}
			if err := json.Unmarshal(r.Raw, &body); err != nil || len(body.Servers) == 0 || body.Servers[0] != a.name {
				t.Fatalf("remote alias lookup servers: %s", r.Raw)
			}
			r = bb.raw().do(t, http.MethodGet, "/_matrix/client/v3/directory/room/"+url.PathEscape("#missing:"+a.name), carol.AccessToken, nil)
			wantRemoteError(t, "an unknown remote alias", r, http.StatusNotFound, "M_NOT_FOUND")
			r = bb.raw().do(t, http.MethodGet, "/_matrix/client/v3/directory/room/"+url.PathEscape("#x:unreachable.example.org"), carol.AccessToken, nil)
			wantRemoteError(t, "an alias of an unreachable server", r, http.StatusBadGateway, "M_UNKNOWN", "could not reach unreachable.example.org")
		})
	})
}
