package homeserver

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/http"
	"reflect"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

func TestTURNServer(t *testing.T) {
	b := storagetest.Backends(t)[0]
	t.Run("off", func(t *testing.T) {
		ts := newTestServer(t, b)
		alice := ts.user(t, "alice")
		r := ts.do(t, http.MethodGet, "/_matrix/client/v3/voip/turnServer", string(alice.AccessToken), nil)
		wantStatus(t, r, http.StatusOK, "")
		if string(r.Raw) != "{}\n" && string(r.Raw) != "{}" {
			t.Fatalf("TURN off: body %q, want {}", r.Raw)
		}
		wantStatus(t, ts.do(t, http.MethodGet, "/_matrix/client/v3/voip/turnServer", "", nil), http.StatusUnauthorized, "M_MISSING_TOKEN")
	})
	t.Run("on", func(t *testing.T) {
		clock := newTestClock()
		uris := []string{"turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp"}
		ts := newTestServer(t, b, func(c *Config) {
			c.TURN = TURNConfig{URIs: uris, SharedSecret: "s3cret", TTL: 10 * time.Minute}
			c.Now = clock.Now
		})
		alice := ts.user(t, "alice")
		resp, err := alice.TurnServer(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		wantUser := fmt.Sprintf("%d:%s", clock.Now().Add(10*time.Minute).Unix(), alice.UserID)
		if resp.Username != wantUser || resp.TTL != 600 || !reflect.DeepEqual(resp.URIs, uris) {
			t.Fatalf("turnServer = %+v, want username %q ttl 600 uris %v", resp, wantUser, uris)
		}
		// Verify the password independently of the server's code.
		mac := hmac.New(sha1.New, []byte("s3cret"))
		mac.Write([]byte(resp.Username))
		if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); resp.Password != want {
			t.Fatalf("password %q, want %q", resp.Password, want)
		}
		mac = hmac.New(sha1.New, []byte("other secret"))
		mac.Write([]byte(resp.Username))
		if base64.StdEncoding.EncodeToString(mac.Sum(nil)) == resp.Password {
			t.Fatal("password verifies with the wrong secret")
		}
	})
}

func TestCapabilities(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		alice := ts.user(t, "alice")
		caps, err := alice.Capabilities(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if caps.ChangePassword == nil || !caps.ChangePassword.Enabled || caps.SetDisplayname == nil || !caps.SetDisplayname.Enabled ||
			caps.SetAvatarURL == nil || !caps.SetAvatarURL.Enabled || caps.ThreePIDChanges == nil || caps.ThreePIDChanges.Enabled {
			t.Fatalf("capabilities = %+v", caps)
		}
		rv := caps.RoomVersions
		if rv == nil || rv.Default != "11" || len(rv.Available) != 2 || !rv.IsStable("10") || !rv.IsStable("11") {
			t.Fatalf("room versions = %+v", rv)
		}
		wantStatus(t, ts.do(t, http.MethodGet, "/_matrix/client/v3/capabilities", "", nil), http.StatusUnauthorized, "M_MISSING_TOKEN")
	})
}

func TestChangePassword(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice := ts.user(t, "alice")
		other := ts.login(t, "alice", "OTHER", "")
		tok := string(alice.AccessToken)
		const path = "/_matrix/client/v3/account/password"

		wantUIA(t, ts.do(t, http.MethodPost, path, tok, map[string]any{"new_password": "new"}), "")
		bad := passwordAuth("alice")
		bad["password"] = "wrong"
		wantUIA(t, ts.do(t, http.MethodPost, path, tok, map[string]any{"new_password": "new", "auth": bad}), "M_FORBIDDEN")
		wantStatus(t, ts.do(t, http.MethodPost, path, tok, map[string]any{"auth": passwordAuth("alice")}), http.StatusBadRequest, "M_MISSING_PARAM")
		wantStatus(t, ts.do(t, http.MethodPost, path, tok, "{not json"), http.StatusBadRequest, "M_NOT_JSON")
		wantStatus(t, ts.do(t, http.MethodPost, path, tok, map[string]any{"new_password": 5}), http.StatusBadRequest, "M_BAD_JSON")

		// logout_devices false keeps the other device.
		r := ts.do(t, http.MethodPost, path, tok, map[string]any{"new_password": "second", "logout_devices": false, "auth": passwordAuth("alice")})
		wantStatus(t, r, http.StatusOK, "")
		if _, err := other.Whoami(ctx); err != nil {
			t.Fatalf("other device logged out with logout_devices false: %v", err)
		}
		// The default logs out every other device, not the caller.
		auth := passwordAuth("alice")
		auth["password"] = "second"
		wantStatus(t, ts.do(t, http.MethodPost, path, tok, map[string]any{"new_password": "third", "auth": auth}), http.StatusOK, "")
		_, err := other.Whoami(ctx)
		assertErrCode(t, err, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
		if _, err := alice.Whoami(ctx); err != nil {
			t.Fatalf("caller logged out: %v", err)
		}
		cli, _ := mautrix.NewClient(ts.URL, "", "")
		login := func(pw string) error {
			_, err := cli.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
				Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "alice"}, Password: pw})
			return err
		}
		assertErrCode(t, login("password"), http.StatusForbidden, "M_FORBIDDEN")
		if err := login("third"); err != nil {
			t.Fatalf("login with new password: %v", err)
		}
	})
}
