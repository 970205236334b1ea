package homeserver

import (
	"net/http"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestDeleteOtherUsersDevice: DELETE /devices/{id} of a device the caller
// does not have (another user's, or none) is 404 and deletes nothing.
func TestDeleteOtherUsersDevice(t *testing.T) {
	ts := newTestServer(t, storagetest.Backends(t)[0])
	ctx := testCtx(t)
	alice, mallory := ts.user(t, "alice"), ts.user(t, "mallory")
	for _, id := range []string{string(alice.DeviceID), "NOSUCHDEVICE"} {
		wantStatus(t, ts.do(t, http.MethodDelete, "/_matrix/client/v3/devices/"+id, mallory.AccessToken,
			map[string]any{"auth": passwordAuth("mallory")}), 404, "M_NOT_FOUND")
	}
	if _, err := alice.Whoami(ctx); err != nil {
		t.Fatalf("alice's device was touched: %v", err)
	}
	// Her own device still goes through user-interactive auth.
	wantUIA(t, ts.do(t, http.MethodDelete, "/_matrix/client/v3/devices/"+string(mallory.DeviceID), mallory.AccessToken, nil), "")
}

// TestPublicRoomsSearch: POST /publicRooms honours
// filter.generic_search_term (name, topic, alias; case-insensitive) and
// pages the matches.
func TestPublicRoomsSearch(t *testing.T) {
	ts := newTestServer(t, storagetest.Backends(t)[0])
	ctx := testCtx(t)
	alice := ts.user(t, "alice")
	for _, r := range []mautrix.ReqCreateRoom{
		{Visibility: "public", Name: "Cats of Matrix"},
		{Visibility: "public", Name: "Dogs", Topic: "no cats allowed"},
		{Visibility: "public", Name: "Birds", RoomAliasName: "catwalk"},
		{Visibility: "public", Name: "Fish"},
	} {
		if _, err := alice.CreateRoom(ctx, &r); err != nil {
			t.Fatal(err)
		}
	}
	search := func(body any) rawResp {
		r := ts.do(t, http.MethodPost, "/_matrix/client/v3/publicRooms", alice.AccessToken, body)
		wantStatus(t, r, 200, "")
		return r
	}
	names := func(r rawResp) map[string]bool {
		out := map[string]bool{}
		for _, e := range r.Body["chunk"].([]any) {
			out[e.(map[string]any)["name"].(string)] = true
		}
		return out
	}
	got := names(search(map[string]any{"filter": map[string]any{"generic_search_term": "CAT"}}))
	if len(got) != 3 || !got["Cats of Matrix"] || !got["Dogs"] || !got["Birds"] {
		t.Fatalf("search CAT: %v", got)
	}
	if got := names(search(map[string]any{"filter": map[string]any{"generic_search_term": "zebra"}})); len(got) != 0 {
		t.Fatalf("search zebra: %v", got)
	}
	if got := names(search(map[string]any{})); len(got) != 4 {
		t.Fatalf("no filter: %v", got)
	}
	// Paging through the matches, one at a time.
	seen := map[string]bool{}
	body := map[string]any{"limit": 1, "filter": map[string]any{"generic_search_term": "cat"}}
	for i := 0; i < 5; i++ {
		r := search(body)
		for n := range names(r) {
			seen[n] = true
		}
		next, _ := r.Body["next_batch"].(string)
		if next == "" {
			break
		}
		body["since"] = next
	}
	if len(seen) != 3 {
		t.Fatalf("paged search saw %v", seen)
	}
}
