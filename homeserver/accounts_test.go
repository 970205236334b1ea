package homeserver

import (
	"errors"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

func TestRegisterLoginWhoami(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice := ts.user(t, "alice")
		who, err := alice.Whoami(ctx)
		if err != nil || who.UserID != userID("alice") || who.DeviceID != alice.DeviceID {
			t.Fatalf("whoami = %+v, %v", who, err)
		}

		cli, _ := mautrix.NewClient(ts.URL, "", "")
		_, err = cli.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "alice"}, Password: "wrong"})
		assertErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")

		resp, err := cli.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "alice"}, Password: "password",
			DeviceID: "PHONE", StoreCredentials: true})
		if err != nil || resp.DeviceID != "PHONE" {
			t.Fatalf("login = %+v, %v", resp, err)
		}
		// A second registration of the same name is refused.
		other, _ := mautrix.NewClient(ts.URL, "", "")
		_, err = other.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "alice", Password: "x"})
		assertErrCode(t, err, http.StatusBadRequest, "M_USER_IN_USE")

		if _, err := cli.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = cli.Whoami(ctx)
		assertErrCode(t, err, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
	})
}

func TestRegistrationModes(t *testing.T) {
	b := storagetest.Backends(t)[0]
	t.Run("closed", func(t *testing.T) {
		ts := newTestServer(t, b, func(c *Config) { c.Registration = RegistrationClosed })
		cli, _ := mautrix.NewClient(ts.URL, "", "")
		_, err := cli.RegisterDummy(testCtx(t), &mautrix.ReqRegister[any]{Username: "bob", Password: "pw"})
		assertErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")
	})
	t.Run("token", func(t *testing.T) {
		ts := newTestServer(t, b, func(c *Config) {
			c.Registration = RegistrationToken
			c.RegistrationTokens = []string{"let-me-in"}
		})
		ctx := testCtx(t)
		cli, _ := mautrix.NewClient(ts.URL, "", "")
		_, _, err := cli.Register(ctx, &mautrix.ReqRegister[any]{Username: "bob", Password: "pw",
			Auth: map[string]string{"type": "m.login.registration_token", "token": "wrong"}})
		assertErrCode(t, err, http.StatusUnauthorized, "M_FORBIDDEN")
		resp, _, err := cli.Register(ctx, &mautrix.ReqRegister[any]{Username: "bob", Password: "pw",
			Auth: map[string]string{"type": "m.login.registration_token", "token": "let-me-in"}})
		if err != nil || resp.UserID != userID("bob") {
			t.Fatalf("register with token = %+v, %v", resp, err)
		}
	})
}

func assertErrCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	var he mautrix.HTTPError
	if !errors.As(err, &he) {
		t.Fatalf("want %d %s, got %v", status, code, err)
	}
	if he.RespError == nil || he.RespError.ErrCode != code || he.Response.StatusCode != status {
		t.Fatalf("want %d %s, got %d %+v", status, code, he.Response.StatusCode, he.RespError)
	}
}
