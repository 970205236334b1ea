package homeserver

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

func TestProfile(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")

		// Registration sets the displayname to the localpart.
		if p, err := bob.GetProfile(ctx, alice.UserID); err != nil || p.DisplayName != "alice" || p.AvatarURL.String() != "" {
			t.Fatalf("profile = %+v, %v", p, err)
		}
		if err := alice.SetDisplayName(ctx, "Alice Liddell"); err != nil {
			t.Fatal(err)
		}
		avatar := id.ContentURI{Homeserver: "test.local", FileID: "abc"}
		if err := alice.SetAvatarURL(ctx, avatar); err != nil {
			t.Fatal(err)
		}
		if d, err := bob.GetDisplayName(ctx, alice.UserID); err != nil || d.DisplayName != "Alice Liddell" {
			t.Fatalf("displayname = %+v, %v", d, err)
		}
		if u, err := bob.GetAvatarURL(ctx, alice.UserID); err != nil || u != avatar {
			t.Fatalf("avatar = %v, %v", u, err)
		}
		// Reading needs no token.
		base := "/_matrix/client/v3/profile/" + url.PathEscape(string(alice.UserID))
		r := ts.do(t, http.MethodGet, base, "", nil)
		wantStatus(t, r, http.StatusOK, "")
		if r.Body["displayname"] != "Alice Liddell" || r.Body["avatar_url"] != "mxc://test.local/abc" {
			t.Fatalf("anonymous profile = %s", r.Raw)
		}
		wantStatus(t, ts.do(t, http.MethodGet, "/_matrix/client/v3/profile/%40nobody%3Atest.local", "", nil), http.StatusNotFound, "M_NOT_FOUND")
		wantStatus(t, ts.do(t, http.MethodGet, "/_matrix/client/v3/profile/%40nobody%3Atest.local/displayname", "", nil), http.StatusNotFound, "M_NOT_FOUND")
		// Bob has no avatar: the field is not found.
		wantStatus(t, ts.do(t, http.MethodGet, "/_matrix/client/v3/profile/%40bob%3Atest.local/avatar_url", "", nil), http.StatusNotFound, "M_NOT_FOUND")

		tok := string(alice.AccessToken)
		// Only one's own profile is writable.
		wantStatus(t, ts.do(t, http.MethodPut, "/_matrix/client/v3/profile/%40bob%3Atest.local/displayname", tok, map[string]any{"displayname": "x"}),
			http.StatusForbidden, "M_FORBIDDEN")
		wantStatus(t, ts.do(t, http.MethodPut, base+"/displayname", "", map[string]any{"displayname": "x"}), http.StatusUnauthorized, "M_MISSING_TOKEN")
		wantStatus(t, ts.do(t, http.MethodPut, base+"/displayname", tok, map[string]any{}), http.StatusBadRequest, "M_MISSING_PARAM")
		wantStatus(t, ts.do(t, http.MethodPut, base+"/displayname", tok, map[string]any{"displayname": 7}), http.StatusBadRequest, "M_BAD_JSON")
		wantStatus(t, ts.do(t, http.MethodPut, base+"/displayname", tok, "{"), http.StatusBadRequest, "M_NOT_JSON")
		long := make([]byte, 300)
		for i := range long {
			long[i] = 'a'
		}
		wantStatus(t, ts.do(t, http.MethodPut, base+"/displayname", tok, map[string]any{"displayname": string(long)}), http.StatusBadRequest, "M_INVALID_PARAM")
		wantStatus(t, ts.do(t, http.MethodPut, base+"/avatar_url", tok, map[string]any{"avatar_url": "https://example.org/a.png"}), http.StatusBadRequest, "M_INVALID_PARAM")
		if d, _ := bob.GetDisplayName(ctx, alice.UserID); d.DisplayName != "Alice Liddell" {
			t.Fatalf("refused writes changed the displayname to %q", d.DisplayName)
		}
		// null clears the field.
		wantStatus(t, ts.do(t, http.MethodPut, base+"/avatar_url", tok, `{"avatar_url": null}`), http.StatusOK, "")
		wantStatus(t, ts.do(t, http.MethodGet, base+"/avatar_url", "", nil), http.StatusNotFound, "M_NOT_FOUND")
	})
}

func TestFilters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		resp, err := alice.CreateFilter(ctx, &mautrix.Filter{Room: &mautrix.RoomFilter{Timeline: &mautrix.FilterPart{Limit: 7, Types: []event.Type{event.EventMessage}}}})
		if err != nil || resp.FilterID == "" {
			t.Fatalf("create filter = %+v, %v", resp, err)
		}
		aPath := "/_matrix/client/v3/user/%40alice%3Atest.local/filter"
		bPath := "/_matrix/client/v3/user/%40bob%3Atest.local/filter"
		atok, btok := string(alice.AccessToken), string(bob.AccessToken)
		r := ts.do(t, http.MethodGet, aPath+"/"+resp.FilterID, atok, nil)
		wantStatus(t, r, http.StatusOK, "")
		var got mautrix.Filter
		if err := json.Unmarshal(r.Raw, &got); err != nil || got.Room == nil || got.Room.Timeline == nil || got.Room.Timeline.Limit != 7 {
			t.Fatalf("filter = %s, %v", r.Raw, err)
		}
		// Stored as given: a field unknown to the spec survives.
		r = ts.do(t, http.MethodPost, aPath, atok, `{"room": {"timeline": {"limit": 3}}, "x.custom": [1, 2]}`)
		wantStatus(t, r, http.StatusOK, "")
		fid, _ := r.Body["filter_id"].(string)
		if r = ts.do(t, http.MethodGet, aPath+"/"+fid, atok, nil); r.Body["x.custom"] == nil {
			t.Fatalf("filter lost a field: %s", r.Raw)
		}

		wantStatus(t, ts.do(t, http.MethodGet, aPath+"/"+resp.FilterID, btok, nil), http.StatusForbidden, "M_FORBIDDEN")
		wantStatus(t, ts.do(t, http.MethodPost, aPath, btok, map[string]any{}), http.StatusForbidden, "M_FORBIDDEN")
		// Bob asking for Alice's filter ID under his own name finds nothing.
		wantStatus(t, ts.do(t, http.MethodGet, bPath+"/"+resp.FilterID, btok, nil), http.StatusNotFound, "M_NOT_FOUND")
		wantStatus(t, ts.do(t, http.MethodGet, aPath+"/999999", atok, nil), http.StatusNotFound, "M_NOT_FOUND")
		wantStatus(t, ts.do(t, http.MethodGet, aPath+"/abc", atok, nil), http.StatusNotFound, "M_NOT_FOUND")
		wantStatus(t, ts.do(t, http.MethodPost, aPath, atok, `[1, 2]`), http.StatusBadRequest, "M_BAD_JSON")
		wantStatus(t, ts.do(t, http.MethodPost, aPath, atok, `"filter"`), http.StatusBadRequest, "M_BAD_JSON")
		wantStatus(t, ts.do(t, http.MethodPost, aPath, atok, `{"room":`), http.StatusBadRequest, "M_NOT_JSON")
	})
}
