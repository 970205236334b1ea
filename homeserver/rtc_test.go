package homeserver

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

const transportsPath = "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports"

// livekitURLOf returns the livekit_service_url of the first transport in
// a list of MSC4143 transports, failing unless there is exactly one.
func livekitURLOf(t *testing.T, v any) string {
	t.Helper()
	list, _ := v.([]any)
	if len(list) != 1 {
		t.Fatalf("want one transport, got %v", v)
	}
	tr, _ := list[0].(map[string]any)
	if tr["type"] != "livekit" {
		t.Fatalf("transport type %v, want livekit", tr["type"])
	}
	u, _ := tr["livekit_service_url"].(string)
	return u
}

// TestRTCDiscovery: Element Call finds the LiveKit focus through
// rtc/transports (authenticated) and, for older releases, through
// org.matrix.msc4143.rtc_foci in the client well-known; /versions
// advertises delayed and sticky events.
func TestRTCDiscovery(t *testing.T) {
	b := storagetest.Backends(t)[0]
	t.Run("public base URL", func(t *testing.T) {
		ts := newTestServer(t, b, func(c *Config) { c.PublicBaseURL = "https://matrix.example.org/" })
		alice := ts.user(t, "alice")
		wantStatus(t, ts.do(t, http.MethodGet, transportsPath, "", nil), http.StatusUnauthorized, "M_MISSING_TOKEN")
		r := ts.do(t, http.MethodGet, transportsPath, alice.AccessToken, nil)
		wantStatus(t, r, http.StatusOK, "")
		if u := livekitURLOf(t, r.Body["rtc_transports"]); u != "https://matrix.example.org/livekit/jwt" {
			t.Fatalf("livekit_service_url %q", u)
		}
		wk := ts.do(t, http.MethodGet, "/.well-known/matrix/client", "", nil)
		wantStatus(t, wk, http.StatusOK, "")
		if u := livekitURLOf(t, wk.Body["org.matrix.msc4143.rtc_foci"]); u != "https://matrix.example.org/livekit/jwt" {
			t.Fatalf("rtc_foci livekit_service_url %q", u)
		}
		// Element Call probes key backup at start: none yet is 404 M_NOT_FOUND.
		wantStatus(t, ts.do(t, http.MethodGet, "/_matrix/client/v3/room_keys/version", alice.AccessToken, nil), http.StatusNotFound, "M_NOT_FOUND")
		v := ts.do(t, http.MethodGet, "/_matrix/client/versions", "", nil)
		feats, _ := v.Body["unstable_features"].(map[string]any)
		for _, f := range []string{"org.matrix.msc4140", "org.matrix.msc4354", "org.matrix.msc4143"} {
			if feats[f] != true {
				t.Errorf("unstable_features[%s] = %v, want true", f, feats[f])
			}
		}
	})
	t.Run("no public base URL: the request's own", func(t *testing.T) {
		ts := newTestServer(t, b)
		alice := ts.user(t, "alice")
		r := ts.do(t, http.MethodGet, transportsPath, alice.AccessToken, nil)
		wantStatus(t, r, http.StatusOK, "")
		if u := livekitURLOf(t, r.Body["rtc_transports"]); u != ts.URL+"/livekit/jwt" {
			t.Fatalf("livekit_service_url %q, want %q", u, ts.URL+"/livekit/jwt")
		}
	})
	t.Run("override", func(t *testing.T) {
		ts := newTestServer(t, b, func(c *Config) { c.RTC.LiveKitServiceURL = "https://rtc.example.org/jwt" })
		alice := ts.user(t, "alice")
		r := ts.do(t, http.MethodGet, transportsPath, alice.AccessToken, nil)
		if u := livekitURLOf(t, r.Body["rtc_transports"]); u != "https://rtc.example.org/jwt" {
			t.Fatalf("livekit_service_url %q", u)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		ts := newTestServer(t, b, func(c *Config) {
			c.PublicBaseURL = "https://matrix.example.org"
			c.RTC.DiscoveryDisabled = true
		})
		alice := ts.user(t, "alice")
		r := ts.do(t, http.MethodGet, transportsPath, alice.AccessToken, nil)
		wantStatus(t, r, http.StatusOK, "")
		if l, _ := r.Body["rtc_transports"].([]any); r.Body["rtc_transports"] == nil || len(l) != 0 {
			t.Fatalf("rtc_transports %s, want []", r.Raw)
		}
		wk := ts.do(t, http.MethodGet, "/.well-known/matrix/client", "", nil)
		if _, ok := wk.Body["org.matrix.msc4143.rtc_foci"]; ok {
			t.Fatalf("well-known carries rtc_foci while disabled: %s", wk.Raw)
		}
	})
	t.Run("bad override refused at start", func(t *testing.T) {
		cfg := Config{RTC: RTCConfig{LiveKitServiceURL: "ftp://x"}}
		if err := cfg.RTC.validate(); err == nil {
			t.Fatal("ftp:// URL accepted")
		}
	})
}

// callMemberPath is the state path of an Element Call membership.
func callMemberPath(room, stateKey string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(room) + "/state/org.matrix.msc3401.call.member/" + url.PathEscape(stateKey)
}

// TestCallMemberOwnedKeys: members write their own MatrixRTC membership
// (createRoom gives call.member power 0); nobody writes another's, except
// someone with more power than its owner (MSC3757).
func TestCallMemberOwnedKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		ctx := testCtx(t)
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		r := room.RoomID.String()
		member := map[string]any{"application": "m.call", "call_id": "", "device_id": "BOBDEV", "scope": "m.room",
			"focus_active": map[string]any{"type": "livekit", "focus_selection": "oldest_membership"}}
		cases := []struct {
			name, token, key string
			status           int
		}{
			{"own key", bob.AccessToken, "_@bob:test.local_BOBDEV_m.call", http.StatusOK},
			{"own key, another device", bob.AccessToken, "_@bob:test.local_PHONE_m.call", http.StatusOK},
			{"another's key", bob.AccessToken, "_@alice:test.local_ALICEDEV_m.call", http.StatusForbidden},
			{"another's key without _", bob.AccessToken, "@alice:test.local_ALICEDEV_m.call", http.StatusForbidden},
			{"another's key, server name extended", bob.AccessToken, "_@alice:test.local.evil_X_m.call", http.StatusForbidden},
			{"another's bare user ID", bob.AccessToken, "@alice:test.local", http.StatusForbidden},
			// Room version 11's auth rules allow "@" keys only equal to
			// the sender; MSC3757 room versions are not supported.
			{"own @ key in v11", bob.AccessToken, "@bob:test.local_BOBDEV_m.call", http.StatusForbidden},
			{"moderator over member", alice.AccessToken, "_@bob:test.local_BOBDEV_m.call", http.StatusOK},
			{"key naming nobody", bob.AccessToken, "room-wide", http.StatusOK},
		}
		for _, c := range cases {
			got := ts.do(t, http.MethodPut, callMemberPath(r, c.key), c.token, member)
			if got.Status != c.status {
				t.Errorf("%s: %d %s, want %d", c.name, got.Status, got.Raw, c.status)
			}
			if c.status == http.StatusForbidden && got.errcode() != "M_FORBIDDEN" {
				t.Errorf("%s: errcode %s", c.name, got.errcode())
			}
		}
		// Nothing refused was stored.
		st := ts.do(t, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(r)+"/state", alice.AccessToken, nil)
		var list []map[string]any
		if err := json.Unmarshal(st.Raw, &list); err != nil {
			t.Fatal(err)
		}
		for _, e := range list {
			if e["type"] == "org.matrix.msc3401.call.member" {
				k, _ := e["state_key"].(string)
				if k == "_@alice:test.local_ALICEDEV_m.call" || k == "_@alice:test.local.evil_X_m.call" {
					t.Errorf("refused membership %q stored", k)
				}
			}
		}
	})
}

func TestCallMemberOwner(t *testing.T) {
	for _, c := range []struct {
		key, owner string
		ok         bool
	}{
		{"_@bob:example.org_DEV_m.call", "@bob:example.org", true},
		{"@bob:example.org_DEV", "@bob:example.org", true},
		{"@bob:example.org", "@bob:example.org", true},
		{"_@bob:example.org:8448_DEV_m.call", "@bob:example.org:8448", true},
		{"_@b_o_b:example.org_DEV", "@b_o_b:example.org", true},
		{"", "", false},
		{"_", "", false},
		{"_@", "", false},
		{"@nocolon_DEV", "", false},
		{"plain", "", false},
		{"__@bob:example.org_DEV", "", false},
	} {
		owner, ok := callMemberOwner(c.key)
		if owner != c.owner || ok != c.ok {
			t.Errorf("callMemberOwner(%q) = %q, %v; want %q, %v", c.key, owner, ok, c.owner, c.ok)
		}
	}
}

// FuzzCallMemberOwner: any state key gives an answer without panicking,
// and an owner found is a valid user ID that the key names.
func FuzzCallMemberOwner(f *testing.F) {
	for _, s := range []string{"_@bob:example.org_DEV_m.call", "@a:b", "_@:_", "@\x00:x_y", "_@bob:[::1]:8448_D"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		owner, ok := callMemberOwner(key)
		if !ok {
			return
		}
		if len(owner) == 0 || owner[0] != '@' || len(owner) > len(key) {
			t.Fatalf("owner %q of key %q", owner, key)
		}
	})
}
