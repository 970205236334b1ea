package homeserver

import (
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

func TestBadInputChangesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice, mallory := ts.user(t, "alice"), ts.user(t, "mallory")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "r"})
		if err != nil {
			t.Fatal(err)
		}
		before, err := alice.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		send := "/_matrix/client/v3/rooms/" + string(room.RoomID) + "/send/m.room.message/"
		big := `{"body":"` + strings.Repeat("x", 70000) + `"}`
		for _, tc := range []struct {
			name, method, url, token, body string
			status                         int
			errcode                        string
		}{
			{"not json", "PUT", send + "t1", alice.AccessToken, `{"body":`, 400, "M_NOT_JSON"},
			{"not an object", "PUT", send + "t2", alice.AccessToken, `[1,2]`, 400, "M_BAD_JSON"},
			{"float", "PUT", send + "t3", alice.AccessToken, `{"body":"x","n":1.5}`, 400, "M_BAD_JSON"},
			{"nan-like exponent", "PUT", send + "t4", alice.AccessToken, `{"n":1e400}`, 400, "M_BAD_JSON"},
			{"int too large", "PUT", send + "t5", alice.AccessToken, `{"n":9007199254740992}`, 400, "M_BAD_JSON"},
			{"int too small", "PUT", send + "t6", alice.AccessToken, `{"n":-9007199254740992}`, 400, "M_BAD_JSON"},
			{"event too large", "PUT", send + "t7", alice.AccessToken, big, 413, "M_TOO_LARGE"},
			{"unknown token", "PUT", send + "t8", "nope", `{"body":"x"}`, 401, "M_UNKNOWN_TOKEN"},
			{"missing token", "PUT", send + "t9", "", `{"body":"x"}`, 401, "M_MISSING_TOKEN"},
			{"not a member", "PUT", send + "t10", mallory.AccessToken, `{"body":"x"}`, 403, "M_FORBIDDEN"},
			{"state without power", "PUT", "/_matrix/client/v3/rooms/" + string(room.RoomID) + "/state/m.room.name/", mallory.AccessToken, `{"name":"pwned"}`, 403, "M_FORBIDDEN"},
			{"unknown room", "PUT", "/_matrix/client/v3/rooms/!nope:test.local/send/m.room.message/t11", alice.AccessToken, `{"body":"x"}`, 403, "M_FORBIDDEN"},
			{"bad login json", "POST", "/_matrix/client/v3/login", "", `{`, 400, "M_NOT_JSON"},
			{"unknown endpoint", "GET", "/_matrix/client/v3/nothing-here", alice.AccessToken, ``, 404, "M_UNRECOGNIZED"},
			{"bad since", "GET", "/_matrix/client/v3/sync?since=garbage", alice.AccessToken, ``, 400, "M_INVALID_PARAM"},
			{"bad room version", "POST", "/_matrix/client/v3/createRoom", alice.AccessToken, `{"room_version":"999"}`, 400, "M_UNSUPPORTED_ROOM_VERSION"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := ts.do(t, tc.method, tc.url, tc.token, tc.body)
				if r.Status != tc.status || r.errcode() != tc.errcode {
					t.Fatalf("got %d %s, want %d %s", r.Status, r.Raw, tc.status, tc.errcode)
				}
				if msg, _ := r.Body["error"].(string); msg == "" {
					t.Fatalf("no error message in %s", r.Raw)
				}
			})
		}
		// Mallory joins a private room uninvited: refused.
		_, err = mallory.JoinRoomByID(ctx, room.RoomID)
		assertErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")

		after, err := alice.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(after.Chunk) != len(before.Chunk) || after.Chunk[0].ID != before.Chunk[0].ID {
			t.Fatalf("bad input changed the room: %d events before, %d after", len(before.Chunk), len(after.Chunk))
		}
	})
}

func TestRateLimits(t *testing.T) {
	ts := newTestServer(t, storagetest.Backends(t)[0], func(c *Config) {
		c.RateLimit = RateLimitConfig{SendPerSecond: 0.001, SendBurst: 3, LoginPerSecond: 0.001, LoginBurst: 2}
	})
	ctx := testCtx(t)
	alice := ts.user(t, "alice")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	var limited map[string]any
	for i := 0; i < 10 && limited == nil; i++ {
		r := ts.do(t, "PUT", "/_matrix/client/v3/rooms/"+string(room.RoomID)+"/send/m.room.message/r"+string(rune('a'+i)),
			alice.AccessToken, `{"body":"x"}`)
		if r.Status == http.StatusTooManyRequests {
			limited = r.Body
		}
	}
	if limited == nil || limited["errcode"] != "M_LIMIT_EXCEEDED" {
		t.Fatalf("send never limited: %v", limited)
	}
	if ms, _ := limited["retry_after_ms"].(float64); ms <= 0 {
		t.Fatalf("retry_after_ms = %v", limited["retry_after_ms"])
	}
	// Logins from one address are limited too (register counts as one).
	var loginStatus int
	for i := 0; i < 5; i++ {
		loginStatus = ts.do(t, "POST", "/_matrix/client/v3/login", "",
			`{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"wrong"}`).Status
		if loginStatus == http.StatusTooManyRequests {
			break
		}
	}
	if loginStatus != http.StatusTooManyRequests {
		t.Fatalf("login never limited, last status %d", loginStatus)
	}
}
