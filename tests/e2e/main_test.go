package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// binary is the switchboard binary under test (internal/testbin: the one
// `make test` built, or one built once for this package run).
func binary(t *testing.T) string {
	t.Helper()
	return testbin.Binary(t)
}

// backend is one database the server runs on in a test.
type backend struct {
	name string
	// database returns the --database value for a fresh database ("" for
	// SQLite in the data directory).
	database func(t *testing.T) string
}

// backends are SQLite always, and PostgreSQL when SWITCHBOARD_TEST_POSTGRES
// is set.
func backends() []backend {
	out := []backend{{name: "sqlite", database: func(*testing.T) string { return "" }}}
	if os.Getenv(storagetest.EnvPostgres) != "" {
		out = append(out, backend{name: "postgres", database: func(t *testing.T) string {
			return storagetest.NewPostgresDB(t)
		}})
	}
	return out
}

// startServer starts the binary on dataDir (and database, if not empty);
// the process is killed at the end of the test if still running. The
// server's log is printed if the test fails.
func startServer(t *testing.T, dataDir, database string, args ...string) *Process {
	t.Helper()
	log := &LockedBuffer{}
	p, err := Start(context.Background(), Options{
		Bin: binary(t), DataDir: dataDir, Database: database,
		Args: append([]string{"--log-format", "json"}, args...), Log: log,
	})
	if err != nil {
		t.Fatalf("%v\nserver log:\n%s", err, tail(log.String(), 4000))
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("server (pid %d) log:\n%s", p.Pid(), tail(log.String(), 8000))
		}
	})
	return p
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// newClient is a mautrix client of the server at url, with no retries and
// a connection pool large enough for concurrent senders.
func newClient(t *testing.T, url string) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(url, "", "")
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second}
	cli.Client = &http.Client{Transport: tr, Timeout: 3 * time.Minute}
	t.Cleanup(tr.CloseIdleConnections)
	return cli
}

// register creates user name with password on the server cli points at and
// makes cli act as that user.
func register(t *testing.T, cli *mautrix.Client, name, password string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: name, Password: password})
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	if !strings.HasPrefix(string(resp.UserID), "@"+name+":") || resp.AccessToken == "" {
		t.Fatalf("register %s: user %q, token %q", name, resp.UserID, resp.AccessToken)
	}
	cli.SetCredentials(resp.UserID, resp.AccessToken)
	cli.DeviceID = resp.DeviceID
}
