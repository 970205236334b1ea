package livekit

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
)

// TestTokenService gets tokens the two ways Element Call asks for them
// and checks what they grant: the room alias lk-jwt-service would give,
// the identity, publish and subscribe, and the SFU URL.
func TestTokenService(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	room := e.room(t, alice)
	if _, err := bob.JoinRoomByID(context.Background(), room); err != nil {
		t.Fatal(err)
	}
	k := keys{testKey, testSecret}
	// Legacy /sfu/get.
	st, out := e.post(t, "/sfu/get", map[string]any{"room": room, "openid_token": openID(t, bob), "device_id": "BOBDEV"})
	if st != http.StatusOK {
		t.Fatalf("/sfu/get: %d %v", st, out)
	}
	if out["url"] != "ws"+strings.TrimPrefix(e.url, "http")+"/livekit/sfu" {
		t.Fatalf("url %v", out["url"])
	}
	g, err := k.verify(out["jwt"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if g.Identity != "@bob:test.local:BOBDEV" || g.Room != RoomAlias(string(room), "m.call#ROOM") ||
		!g.CanPublish || !g.CanSubscribe || time.Until(g.Expires) < 50*time.Minute {
		t.Fatalf("grant %+v", g)
	}
	// The claim layout livekit-client and LiveKit servers read.
	v, err := auth.ParseAPIToken(out["jwt"].(string))
	if err != nil {
		t.Fatal(err)
	}
	_, grants, err := v.Verify(testSecret)
	if err != nil || grants.Video.Room != g.Room || !grants.Video.RoomJoin || v.APIKey() != testKey {
		t.Fatalf("claims %+v %v", grants, err)
	}
	// /get_token with a MatrixRTC slot.
	st, out = e.post(t, "/get_token", map[string]any{"room_id": room, "slot_id": "m.call#ROOM",
		"openid_token": openID(t, alice),
		"member":       map[string]any{"id": "mem1", "claimed_user_id": "@alice:test.local", "claimed_device_id": "ADEV"}})
	if st != http.StatusOK {
		t.Fatalf("/get_token: %d %v", st, out)
	}
	g2, err := k.verify(out["jwt"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if g2.Room != g.Room || g2.Identity != memberIdentity("@alice:test.local", "ADEV", "mem1") {
		t.Fatalf("get_token grant %+v (legacy room %s)", g2, g.Room)
	}
}

// TestTokenServiceRefuses: every bad request gets its Matrix error and no
// token.
func TestTokenServiceRefuses(t *testing.T) {
	var skew atomic.Int64
	e := newEnv(t, envOpts{skew: &skew})
	alice, carol := e.user(t, "alice"), e.user(t, "carol")
	room := e.room(t, alice)
	expired := openID(t, alice)
	skew.Store(int64(2 * time.Hour)) // alice's first token is now past its hour
	good := openID(t, alice)
	forged := openID(t, alice)
	forged["access_token"] = "sbo_forged" + strings.Repeat("x", 20)
	otherServer := openID(t, alice)
	otherServer["matrix_server_name"] = "other.invalid"
	legacy := func(tok map[string]any, room any) map[string]any {
		return map[string]any{"room": room, "openid_token": tok, "device_id": "DEV"}
	}
	cases := []struct {
		name   string
		path   string
		body   any
		status int
		code   string
	}{
		{"forged token", "/sfu/get", legacy(forged, room), 401, "M_UNAUTHORIZED"},
		{"expired token", "/sfu/get", legacy(expired, room), 401, "M_UNAUTHORIZED"},
		{"other server's token", "/sfu/get", legacy(otherServer, room), 401, "M_UNAUTHORIZED"},
		{"room the user is not in", "/sfu/get", legacy(openID(t, carol), room), 403, "M_FORBIDDEN"},
		{"room that does not exist", "/sfu/get", legacy(good, "!nope:test.local"), 403, "M_FORBIDDEN"},
		{"not a room ID", "/sfu/get", legacy(good, "#alias:test.local"), 400, "M_BAD_JSON"},
		{"room of wrong type", "/sfu/get", legacy(good, 5), 400, "M_BAD_JSON"},
		{"no device", "/sfu/get", map[string]any{"room": room, "openid_token": good}, 400, "M_BAD_JSON"},
		{"no token", "/sfu/get", map[string]any{"room": room, "device_id": "D"}, 400, "M_BAD_JSON"},
		{"not JSON", "/sfu/get", []byte("room=1"), 400, "M_BAD_JSON"},
		{"trailing data", "/sfu/get", []byte(`{"room":"!a:b"} {}`), 400, "M_BAD_JSON"},
		{"empty body", "/sfu/get", []byte(``), 400, "M_BAD_JSON"},
		{"array", "/get_token", []byte(`[]`), 400, "M_BAD_JSON"},
		{"too large", "/sfu/get", []byte(`{"room":"` + strings.Repeat("a", 20000) + `"}`), 413, "M_TOO_LARGE"},
		{"claimed user is someone else", "/get_token", map[string]any{"room_id": room, "slot_id": "m.call#ROOM",
			"openid_token": good, "member": map[string]any{"id": "m", "claimed_user_id": "@carol:test.local",
				"claimed_device_id": "D"}}, 401, "M_UNAUTHORIZED"},
		{"no member", "/get_token", map[string]any{"room_id": room, "slot_id": "m.call#ROOM",
			"openid_token": good}, 400, "M_BAD_JSON"},
		{"no slot", "/get_token", map[string]any{"room_id": room, "openid_token": good,
			"member": map[string]any{"id": "m", "claimed_user_id": "@alice:test.local", "claimed_device_id": "D"}}, 400, "M_BAD_JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, out := e.post(t, c.path, c.body)
			if st != c.status || out["errcode"] != c.code || out["jwt"] != nil {
				t.Fatalf("got %d %v, want %d %s", st, out, c.status, c.code)
			}
		})
	}
	// The good token itself works, so the refusals above were for their
	// reasons.
	if st, out := e.post(t, "/sfu/get", legacy(good, room)); st != 200 || out["jwt"] == nil {
		t.Fatalf("good request: %d %v", st, out)
	}
}

// TestTokenServiceHTTP: CORS preflight, methods and paths.
func TestTokenServiceHTTP(t *testing.T) {
	e := newEnv(t, envOpts{})
	req, _ := http.NewRequest(http.MethodOptions, e.url+"/livekit/jwt/sfu/get", nil)
	req.Header.Set("Origin", "https://call.example.org")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "content-type") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	resp, err = http.Get(e.url + "/livekit/jwt/get_token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	if st, out := e.post(t, "/nope", map[string]any{}); st != 404 || out["errcode"] != "M_NOT_FOUND" {
		t.Fatalf("unknown path: %d %v", st, out)
	}
}
