package homeserver

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net/http"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

func TestOpenIDToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		clock := newTestClock()
		ts := newTestServer(t, b, func(c *Config) { c.Now = clock.Now })
		ctx := testCtx(t)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		tok, err := alice.RequestOpenIDToken(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.MatrixServerName != "test.local" || tok.ExpiresIn != 3600 {
			t.Fatalf("openid token = %+v", tok)
		}
		if u, err := ts.OpenIDUserInfo(ctx, tok.AccessToken); err != nil || u != string(alice.UserID) {
			t.Fatalf("userinfo = %q, %v", u, err)
		}
		// Neither the access token nor a made-up one is an OpenID token.
		for _, bad := range []string{"", string(alice.AccessToken), "sbo_nope"} {
			if _, err := ts.OpenIDUserInfo(ctx, bad); !errors.Is(err, ErrUnknownOpenIDToken) {
				t.Fatalf("userinfo(%q) err = %v", bad, err)
			}
		}
		clock.Advance(3601 * time.Second)
		if _, err := ts.OpenIDUserInfo(ctx, tok.AccessToken); !errors.Is(err, ErrUnknownOpenIDToken) {
			t.Fatalf("expired token: %v", err)
		}
		wantStatus(t, ts.do(t, http.MethodPost, "/_matrix/client/v3/user/%40alice%3Atest.local/openid/request_token", string(bob.AccessToken), map[string]any{}),
			http.StatusForbidden, "M_FORBIDDEN")
		wantStatus(t, ts.do(t, http.MethodPost, "/_matrix/client/v3/user/%40alice%3Atest.local/openid/request_token", string(alice.AccessToken), "["),
			http.StatusBadRequest, "M_NOT_JSON")
	})
}

// adminMAC computes the shared-secret registration MAC independently of
// the server's code.
func adminMAC(secret, nonce, user, password string, admin bool) string {
	m := hmac.New(sha1.New, []byte(secret))
	flag := "notadmin"
	if admin {
		flag = "admin"
	}
	m.Write([]byte(nonce + "\x00" + user + "\x00" + password + "\x00" + flag))
	return hex.EncodeToString(m.Sum(nil))
}

func TestSharedSecretRegistration(t *testing.T) {
	const path = "/_synapse/admin/v1/register"
	t.Run("disabled", func(t *testing.T) {
		ts := newTestServer(t, storagetest.Backends(t)[0])
		r := ts.do(t, http.MethodGet, path, "", nil)
		wantStatus(t, r, http.StatusBadRequest, "M_UNKNOWN")
		if r.Body["error"] != "Shared secret registration is not enabled" {
			t.Fatalf("disabled: %s", r.Raw)
		}
		wantStatus(t, ts.do(t, http.MethodPost, path, "", map[string]any{"nonce": "x"}), http.StatusBadRequest, "M_UNKNOWN")
	})
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		const secret = "let me in"
		clock := newTestClock()
		ts := newTestServer(t, b, func(c *Config) {
			c.RegistrationSharedSecret = secret
			c.Registration = RegistrationClosed
			c.Now = clock.Now
		})
		ctx := testCtx(t)
		nonce := func() string {
			t.Helper()
			r := ts.do(t, http.MethodGet, path, "", nil)
			wantStatus(t, r, http.StatusOK, "")
			n, _ := r.Body["nonce"].(string)
			if n == "" {
				t.Fatalf("no nonce: %s", r.Raw)
			}
			return n
		}
		body := func(n, user, pw string, admin bool, mac string) map[string]any {
			return map[string]any{"nonce": n, "username": user, "password": pw, "admin": admin, "mac": mac}
		}

		// A bad MAC is refused and spends the nonce.
		n := nonce()
		wantStatus(t, ts.do(t, http.MethodPost, path, "", body(n, "root", "pw", true, adminMAC("wrong secret", n, "root", "pw", true))), http.StatusForbidden, "M_FORBIDDEN")
		wantStatus(t, ts.do(t, http.MethodPost, path, "", body(n, "root", "pw", true, adminMAC(secret, n, "root", "pw", true))), http.StatusBadRequest, "M_UNKNOWN")
		// The MAC covers the admin flag.
		n = nonce()
		wantStatus(t, ts.do(t, http.MethodPost, path, "", body(n, "root", "pw", true, adminMAC(secret, n, "root", "pw", false))), http.StatusForbidden, "M_FORBIDDEN")
		n = nonce()
		wantStatus(t, ts.do(t, http.MethodPost, path, "", body(n, "root", "pw", true, "not hex")), http.StatusForbidden, "M_FORBIDDEN")
		wantStatus(t, ts.do(t, http.MethodPost, path, "", body("never issued", "root", "pw", true, adminMAC(secret, "never issued", "root", "pw", true))), http.StatusBadRequest, "M_UNKNOWN")
		wantStatus(t, ts.do(t, http.MethodPost, path, "", map[string]any{"nonce": nonce(), "username": "root"}), http.StatusBadRequest, "M_MISSING_PARAM")
		wantStatus(t, ts.do(t, http.MethodPost, path, "", "{"), http.StatusBadRequest, "M_NOT_JSON")

		// A nonce expires after 60 s.
		n = nonce()
		clock.Advance(61 * time.Second)
		wantStatus(t, ts.do(t, http.MethodPost, path, "", body(n, "root", "pw", true, adminMAC(secret, n, "root", "pw", true))), http.StatusBadRequest, "M_UNKNOWN")

		// A good MAC creates an admin, with the displayname asked for.
		n = nonce()
		req := body(n, "root", "s3cret pw", true, adminMAC(secret, n, "root", "s3cret pw", true))
		req["displayname"] = "The Admin"
		r := ts.do(t, http.MethodPost, path, "", req)
		wantStatus(t, r, http.StatusOK, "")
		if r.Body["user_id"] != "@root:test.local" || r.Body["access_token"] == "" {
			t.Fatalf("register = %s", r.Raw)
		}
		u, err := ts.db.UserByID(ctx, "@root:test.local")
		if err != nil || !u.IsAdmin {
			t.Fatalf("user = %+v, %v", u, err)
		}
		if name, _, _ := ts.db.DisplayProfile(ctx, "@root:test.local"); name != "The Admin" {
			t.Fatalf("displayname = %q", name)
		}
		cli, _ := mautrix.NewClient(ts.URL, "", "")
		if _, err := cli.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "root"}, Password: "s3cret pw", StoreCredentials: true}); err != nil {
			t.Fatalf("login as the new admin: %v", err)
		}
		// The same username again is taken; a non-admin is not an admin.
		n = nonce()
		wantStatus(t, ts.do(t, http.MethodPost, path, "", body(n, "root", "x", false, adminMAC(secret, n, "root", "x", false))), http.StatusBadRequest, "M_USER_IN_USE")
		n = nonce()
		wantStatus(t, ts.do(t, http.MethodPost, path, "", body(n, "plain", "x", false, adminMAC(secret, n, "plain", "x", false))), http.StatusOK, "")
		if u, _ := ts.db.UserByID(ctx, "@plain:test.local"); u.IsAdmin {
			t.Fatal("notadmin registration made an admin")
		}
		n = nonce()
		wantStatus(t, ts.do(t, http.MethodPost, path, "", body(n, "Bad Name!", "x", false, adminMAC(secret, n, "Bad Name!", "x", false))), http.StatusBadRequest, "M_INVALID_USERNAME")
	})
}
