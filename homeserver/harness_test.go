package homeserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// testServer is a real homeserver on a loopback port.
type testServer struct {
	*Server
	URL string
}

// forEachBackend runs fn once per database backend (SQLite always,
// PostgreSQL when SWITCHBOARD_TEST_POSTGRES is set).
func forEachBackend(t *testing.T, fn func(t *testing.T, b storagetest.Backend)) {
	for _, b := range storagetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) { fn(t, b) })
	}
}

// newTestServer starts a homeserver named "test.local" with open
// registration and no rate limits; opts adjust the config.
func newTestServer(t testing.TB, b storagetest.Backend, opts ...func(*Config)) *testServer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		ServerName:   "test.local",
		Database:     b.Open(t),
		Registration: RegistrationOpen,
		SigningKey:   key,
		KeyID:        "ed25519:test",
		RateLimit:    RateLimitConfig{Disabled: true},
		// Federation resolves names from /etc/hosts only: no DNS traffic.
		Federation: FederationConfig{Resolver: offlineResolver()},
	}
	for _, o := range opts {
		o(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("SWITCHBOARD_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := New(ctx, cfg, log, nil)
	if err != nil {
		t.Fatalf("homeserver.New: %v", err)
	}
	hs := httptest.NewServer(s.ClientHandler())
	t.Cleanup(func() {
		s.Shutdown()
		hs.Close()
		s.Close()
	})
	return &testServer{Server: s, URL: hs.URL}
}

// user registers localpart with password "password" and returns a
// logged-in mautrix client.
func (ts *testServer) user(t testing.TB, localpart string) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(ts.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.RegisterDummy(context.Background(), &mautrix.ReqRegister[any]{Username: localpart, Password: "password"})
	if err != nil {
		t.Fatalf("register %s: %v", localpart, err)
	}
	cli.UserID, cli.AccessToken, cli.DeviceID = resp.UserID, resp.AccessToken, resp.DeviceID
	return cli
}

// userID is the full user ID of localpart on the test server.
func userID(localpart string) id.UserID { return id.UserID("@" + localpart + ":test.local") }

// ctx returns a context that ends with the test or after 60 s.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
