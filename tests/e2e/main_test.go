package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// binDir holds the binary built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "switchboard-e2e-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// EnvBin names a prebuilt switchboard binary to test instead of building
// ./cmd/switchboard of this module.
const EnvBin = "SWITCHBOARD_E2E_BIN"

// binary builds ./cmd/switchboard once per package run (or takes EnvBin).
// It also stats the server's source files from inside the test, so `go
// test` caches this package's result only while those files are
// unchanged.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if bin := os.Getenv(EnvBin); bin != "" {
			_, buildErr = os.Stat(bin)
			builtBin = bin
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		root, err := ModuleRoot(".")
		if err != nil {
			buildErr = err
			return
		}
		files, err := SourceFiles(ctx, root)
		if err != nil {
			buildErr = err
			return
		}
		for _, f := range files {
			_, _ = os.Stat(f)
		}
		builtBin, buildErr = Build(ctx, root, binDir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
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
