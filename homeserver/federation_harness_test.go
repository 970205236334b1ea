package homeserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// fedNode is a homeserver with a TLS federation listener on loopback,
// named "127.0.0.1:<federation port>", that can be stopped and started
// again on the same ports and database.
type fedNode struct {
	t       testing.TB
	name    string
	dsn     string
	key     ed25519.PrivateKey
	fedAddr string
	cliAddr string
	opts    []func(*Config)

	srv    *Server
	tamper tamperer // rewrites federation responses (hostile-peer tests)
	fedSrv *httptest.Server
	cliSrv *httptest.Server
	URL    string
}

// startFedNode starts a node on fresh loopback ports; opts adjust its config.
func startFedNode(t testing.TB, b storagetest.Backend, opts ...func(*Config)) *fedNode {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fedLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cliLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &fedNode{t: t, dsn: b.Open(t), key: key, fedAddr: fedLn.Addr().String(), cliAddr: cliLn.Addr().String(), opts: opts}
	n.name = n.fedAddr
	n.start(fedLn, cliLn)
	t.Cleanup(n.stop)
	return n
}

func (n *fedNode) config() Config {
	cfg := Config{
		ServerName:   n.name,
		Database:     n.dsn,
		Registration: RegistrationOpen,
		SigningKey:   n.key,
		KeyID:        "ed25519:fed",
		RateLimit:    RateLimitConfig{Disabled: true},
		Federation: FederationConfig{
			SkipTLSVerify: true,
			AllowNetworks: []string{"127.0.0.1/32"},
			RetryMin:      100 * time.Millisecond,
			RetryMax:      time.Second,
			Resolver:      offlineResolver(),
		},
	}
	for _, o := range n.opts {
		o(&cfg)
	}
	return cfg
}

func testLogger() *slog.Logger {
	if os.Getenv("SWITCHBOARD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (n *fedNode) start(fedLn, cliLn net.Listener) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := New(ctx, n.config(), testLogger(), nil)
	if err != nil {
		n.t.Fatalf("homeserver.New: %v", err)
	}
	n.srv = s
	n.fedSrv = &httptest.Server{Listener: fedLn, Config: &http.Server{Handler: n.tamper.wrap(s.FederationHandler())}}
	n.fedSrv.StartTLS()
	n.cliSrv = &httptest.Server{Listener: cliLn, Config: &http.Server{Handler: s.ClientHandler()}}
	n.cliSrv.Start()
	n.URL = n.cliSrv.URL
}

// stop shuts the node down (idempotent).
func (n *fedNode) stop() {
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.fedSrv.Close()
	n.cliSrv.Close()
	_ = n.srv.Close()
	n.srv = nil
}

// restart starts the node again on the same ports and database.
func (n *fedNode) restart() {
	n.t.Helper()
	listen := func(addr string) net.Listener {
		deadline := time.Now().Add(10 * time.Second)
		for {
			ln, err := net.Listen("tcp", addr)
			if err == nil {
				return ln
			}
			if time.Now().After(deadline) {
				n.t.Fatalf("listen again on %s: %v", addr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	n.start(listen(n.fedAddr), listen(n.cliAddr))
}

// user registers localpart on the node and returns a logged-in client.
func (n *fedNode) user(t testing.TB, localpart string) *mautrix.Client {
	t.Helper()
	return (&testServer{Server: n.srv, URL: n.URL}).user(t, localpart)
}

// fedBackends runs fn on SQLite (and PostgreSQL when configured).
func fedBackends(t *testing.T, fn func(t *testing.T, b storagetest.Backend)) {
	forEachBackend(t, fn)
}

// cut closes the node's federation listener (the node keeps running, its
// clients keep working, its peers cannot reach it).
func (n *fedNode) cut() {
	n.fedSrv.Close()
}

// restore listens again on the same federation port.
func (n *fedNode) restore() {
	n.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := net.Listen("tcp", n.fedAddr)
		if err == nil {
			n.fedSrv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: n.srv.FederationHandler()}}
			n.fedSrv.StartTLS()
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("listen again on %s: %v", n.fedAddr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// offlineResolver answers from /etc/hosts and fails every DNS query
// without sending it: tests send nothing beyond loopback.
func offlineResolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("test resolver: no DNS")
	}}
}
