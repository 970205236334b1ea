package homeserver

import (
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestCanonicalAliasMustPointToRoom: a room cannot claim another room's
// alias, in alias or alt_aliases, nor a malformed or unknown one (issue 20
// item 2); its own aliases work.
func TestCanonicalAliasMustPointToRoom(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice, mallory := ts.user(t, "alice"), ts.user(t, "mallory")
		if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "pubroom"}); err != nil {
			t.Fatal(err)
		}
		own, err := mallory.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		p := "/_matrix/client/v3/rooms/" + url.PathEscape(string(own.RoomID)) + "/state/m.room.canonical_alias/"
		for _, tc := range []struct {
			name    string
			body    any
			errcode string
		}{
			{"another room's alias", map[string]any{"alias": "#pubroom:test.local"}, "M_BAD_ALIAS"},
			{"another room's alias in alt_aliases", map[string]any{"alt_aliases": []string{"#pubroom:test.local"}}, "M_BAD_ALIAS"},
			{"unknown alias", map[string]any{"alias": "#nothing:test.local"}, "M_BAD_ALIAS"},
			{"malformed", map[string]any{"alias": "pubroom"}, "M_BAD_ALIAS"},
			{"no localpart", map[string]any{"alias": "#:test.local"}, "M_BAD_ALIAS"},
			{"bad server name", map[string]any{"alt_aliases": []string{"#a:bad server"}}, "M_BAD_ALIAS"},
			{"unreachable remote alias", map[string]any{"alias": "#x:unreachable.invalid"}, "M_BAD_ALIAS"},
			{"alias not a string", map[string]any{"alias": 5}, "M_INVALID_PARAM"},
			{"alt_aliases not a list", map[string]any{"alt_aliases": "#a:test.local"}, "M_INVALID_PARAM"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantStatus(t, ts.do(t, "PUT", p, mallory.AccessToken, tc.body), 400, tc.errcode)
			})
		}
		if err := mallory.StateEvent(ctx, own.RoomID, event.StateCanonicalAlias, "", &struct{}{}); err == nil {
			t.Fatal("a refused canonical alias was stored")
		}
		// Her own aliases are fine, and stay fine once deleted from the
		// directory (only new alt_aliases are checked).
		for _, a := range []string{"#mine:test.local", "#mine2:test.local"} {
			if _, err := mallory.CreateAlias(ctx, id.RoomAlias(a), own.RoomID); err != nil {
				t.Fatal(err)
			}
		}
		wantStatus(t, ts.do(t, "PUT", p, mallory.AccessToken,
			map[string]any{"alias": "#mine:test.local", "alt_aliases": []string{"#mine:test.local", "#mine2:test.local"}}), 200, "")
		if _, err := mallory.DeleteAlias(ctx, "#mine2:test.local"); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, ts.do(t, "PUT", p, mallory.AccessToken,
			map[string]any{"alias": "#mine:test.local", "alt_aliases": []string{"#mine2:test.local"}}), 200, "")
		wantStatus(t, ts.do(t, "PUT", p, mallory.AccessToken, map[string]any{}), 200, "")

		// createRoom cannot smuggle it in through initial_state.
		wantStatus(t, ts.do(t, "POST", "/_matrix/client/v3/createRoom", mallory.AccessToken, map[string]any{
			"initial_state": []any{map[string]any{"type": "m.room.canonical_alias", "content": map[string]any{"alias": "#pubroom:test.local"}}},
		}), 400, "M_BAD_ALIAS")
		wantStatus(t, ts.do(t, "POST", "/_matrix/client/v3/createRoom", mallory.AccessToken, map[string]any{
			"room_alias_name": "fresh",
			"initial_state":   []any{map[string]any{"type": "m.room.canonical_alias", "content": map[string]any{"alias": "#fresh:test.local"}}},
		}), 200, "")
	})
}

// TestAliasPolicy: aliases with control or zero-width characters, in a
// decomposed form, or that read the same as an existing one (case,
// full-width letters) are refused; the README names the policy.
func TestAliasPolicy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice := ts.user(t, "alice")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		put := func(alias string) rawResp {
			return ts.do(t, "PUT", "/_matrix/client/v3/directory/room/"+url.PathEscape(alias), alice.AccessToken,
				map[string]any{"room_id": room.RoomID})
		}
		wantStatus(t, put("#Room:test.local"), 200, "")
		wantStatus(t, put("#café:test.local"), 200, "")
		for _, tc := range []struct {
			name, alias string
			status      int
			errcode     string
		}{
			{"lower case twin", "#room:test.local", 409, "M_UNKNOWN"},
			{"upper case twin", "#ROOM:test.local", 409, "M_UNKNOWN"},
			{"full-width twin", "#ｒｏｏｍ:test.local", 409, "M_UNKNOWN"},
			{"upper case accented twin", "#CAFÉ:test.local", 409, "M_UNKNOWN"},
			{"zero-width space", "#ro\u200bom:test.local", 400, "M_INVALID_PARAM"},
			{"zero-width joiner", "#ro\u200dom2:test.local", 400, "M_INVALID_PARAM"},
			{"bidi override", "#ro\u202eom3:test.local", 400, "M_INVALID_PARAM"},
			{"control character", "#ro\x01om4:test.local", 400, "M_INVALID_PARAM"},
			{"space", "#ro om5:test.local", 400, "M_INVALID_PARAM"},
			{"NFD", "#cafe\u0301x:test.local", 400, "M_INVALID_PARAM"},
			{"other server", "#x:elsewhere.example", 400, "M_INVALID_PARAM"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantStatus(t, put(tc.alias), tc.status, tc.errcode)
			})
		}
		// createRoom's room_alias_name follows the same policy.
		wantStatus(t, ts.do(t, "POST", "/_matrix/client/v3/createRoom", alice.AccessToken,
			map[string]any{"room_alias_name": "ROOM"}), 400, "M_ROOM_IN_USE")
		wantStatus(t, ts.do(t, "POST", "/_matrix/client/v3/createRoom", alice.AccessToken,
			map[string]any{"room_alias_name": "a\u200bb"}), 400, "M_INVALID_PARAM")
		if got, err := alice.ResolveAlias(ctx, "#Room:test.local"); err != nil || got.RoomID != room.RoomID {
			t.Fatalf("the first alias no longer resolves: %v %v", got, err)
		}
	})
}

// TestCanonicalAliasRemote: a remote alias in m.room.canonical_alias is
// asked of its server: accepted when it points to the room, M_BAD_ALIAS
// when it points elsewhere.
func TestCanonicalAliasRemote(t *testing.T) {
	b := storagetest.Backends(t)[0]
	a, bb := startFedNode(t, b), startFedNode(t, b)
	ctx := testCtx(t)
	alice, bob := a.user(t, "alice"), bb.user(t, "bob")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "lobby"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "elsewhere"}); err != nil {
		t.Fatal(err)
	}
	// Bob's own room on B may not claim A's aliases.
	own, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	bobTS := &testServer{Server: bb.srv, URL: bb.URL}
	p := "/_matrix/client/v3/rooms/" + url.PathEscape(string(own.RoomID)) + "/state/m.room.canonical_alias/"
	wantStatus(t, bobTS.do(t, "PUT", p, bob.AccessToken, map[string]any{"alias": "#lobby:" + a.name}), 400, "M_BAD_ALIAS")
	wantStatus(t, bobTS.do(t, "PUT", p, bob.AccessToken, map[string]any{"alt_aliases": []string{"#nothing:" + a.name}}), 400, "M_BAD_ALIAS")
	// In the room itself (Bob joined through B, given power), A's alias
	// for it is accepted on B.
	if _, err := bob.JoinRoom(ctx, "#lobby:"+a.name, nil); err != nil {
		t.Fatalf("join by remote alias: %v", err)
	}
	pl := map[string]any{"users": map[string]any{string(alice.UserID): 100, string(bob.UserID): 100}}
	if _, err := alice.SendStateEvent(ctx, room.RoomID, event.StatePowerLevels, "", pl); err != nil {
		t.Fatal(err)
	}
	q := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room.RoomID)) + "/state/m.room.canonical_alias/"
	deadline := time.Now().Add(20 * time.Second)
	for {
		// Retried until Bob's server has the new power levels.
		r := bobTS.do(t, "PUT", q, bob.AccessToken, map[string]any{"alias": "#lobby:" + a.name})
		if r.Status == 200 {
			break
		}
		if r.Status != 403 || time.Now().After(deadline) {
			t.Fatalf("canonical alias pointing to the room: %d %s", r.Status, r.Raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantStatus(t, bobTS.do(t, "PUT", q, bob.AccessToken, map[string]any{"alias": "#elsewhere:" + a.name}), 400, "M_BAD_ALIAS")
}
