package signalling

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver"
	"github.com/switchboard-chat/switchboard/internal/testkit"
	"github.com/switchboard-chat/switchboard/sfu"
	"github.com/switchboard-chat/switchboard/signalling/livekit"
)

// This file is the integration harness: a real homeserver on a loopback
// HTTP port with SQLite in a temporary directory, a real SFU on a
// loopback UDP socket, the focus between them, and mautrix clients.

const testTimeout = 30 * time.Second

// Unstable event types as Element Call sends them.
var (
	evCall       = event.Type{Type: TypeCallUnstable, Class: event.StateEventType}
	evCallMember = event.Type{Type: TypeCallMemberUnstable, Class: event.StateEventType}
)

type env struct {
	t        testing.TB
	lk       *livekit.Server // with envOpts.livekit
	hs       *homeserver.Server
	url      string
	sfu      *sfu.SFU
	focus    *Focus
	sfuReg   *prometheus.Registry
	focusReg *prometheus.Registry
	log      *slog.Logger
}

type envOpts struct {
	autoSubscribe bool
	// livekit also serves MatrixRTC's LiveKit side (the token service
	// and the signalling server) on the homeserver's listener, laid out
	// as cmd/switchboard lays it out, sharing the SFU and naming peers
	// with the focus.
	livekit bool
	focus   func(*FocusConfig)
}

func testLogger() *slog.Logger {
	if os.Getenv("SWITCHBOARD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newEnv starts a homeserver "test.local", an SFU and a running focus.
// Everything is torn down, and goroutine leaks checked, when the test
// ends.
func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	// Registered first, so it runs after every other cleanup.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore, testkit.PionClosing) })
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	log := testLogger()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	hs, err := homeserver.New(ctx, homeserver.Config{
		ServerName:   "test.local",
		Database:     filepath.Join(t.TempDir(), "hs.db"),
		Registration: homeserver.RegistrationOpen,
		SigningKey:   key,
		KeyID:        "ed25519:test",
		RateLimit:    homeserver.RateLimitConfig{Disabled: true},
	}, log, nil)
	if err != nil {
		t.Fatalf("homeserver.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(hs.ClientHandler())
	srv.Listener.Close()
	srv.Listener = ln
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sfuReg, focusReg := prometheus.NewRegistry(), prometheus.NewRegistry()
	s, err := sfu.New(sfu.Config{UDPMux: conn, AutoSubscribe: o.autoSubscribe, Logger: log, Registerer: sfuReg})
	if err != nil {
		t.Fatal(err)
	}
	cfg := FocusConfig{Homeserver: hs, SFU: s, Logger: log, Registerer: focusReg,
		CheckInterval: 200 * time.Millisecond, InviteBurst: 20, InviteRate: 5}
	if o.focus != nil {
		o.focus(&cfg)
	}
	lkPeers := &lateServer{}
	if o.livekit {
		cfg.Peers = lkPeers
	}
	f, err := NewFocus(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var lk *livekit.Server
	if o.livekit {
		lk = startLiveKit(t, hs, s, f, ln.Addr().String(), srv, log)
		lkPeers.s = lk
	}
	srv.Start()
	runCtx, stop := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(runCtx) }()
	t.Cleanup(func() {
		if lk != nil {
			lk.Close()
		}
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := f.Close(); err != nil {
			t.Errorf("focus Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("sfu Close: %v", err)
		}
		hs.Shutdown()
		srv.Close()
		if err := hs.Close(); err != nil {
			t.Errorf("homeserver Close: %v", err)
		}
	})
	return &env{t: t, lk: lk, hs: hs, url: srv.URL, sfu: s, focus: f, sfuReg: sfuReg, focusReg: focusReg, log: log}
}

// lateServer is the focus's PeerDirectory of LiveKit participants, set
// once the signalling server exists (as cmd/switchboard's liveKitPeers).
type lateServer struct{ s *livekit.Server }

func (l *lateServer) Peer(pid string) (string, string, bool) {
	if l.s == nil {
		return "", "", false
	}
	return l.s.Peer(pid)
}

// startLiveKit mounts the LiveKit token service and signalling server
// beside the homeserver on srv (not started yet), at addr.
func startLiveKit(t *testing.T, hs *homeserver.Server, s *sfu.SFU, f *Focus, addr string, srv *httptest.Server,
	log *slog.Logger) *livekit.Server {
	t.Helper()
	const key, secret = "switchboard", "0123456789abcdef0123456789abcdef-test"
	tokens, err := livekit.NewTokenService(livekit.TokenConfig{Homeserver: hs, ServerName: "test.local",
		APIKey: key, APISecret: secret, SFUURL: "ws://" + addr + "/livekit/sfu", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := livekit.NewServer(livekit.ServerConfig{SFU: s, APIKey: key, APISecret: secret, Peers: f,
		QualityInterval: 200 * time.Millisecond,
		RoomState:       hs, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", hs.ClientHandler())
	mux.Handle("/livekit/jwt/", tokens)
	mux.Handle("/livekit/sfu/", sig)
	srv.Config.Handler = mux
	return sig
}

// user registers localpart and returns a logged-in client.
func (e *env) user(t testing.TB, localpart string) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(e.url, "", "")
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

// callRoom creates a public room whose members may publish call
// memberships, with an MSC3401 call confID in it.
func (e *env) callRoom(t testing.TB, creator *mautrix.Client, confID string) id.RoomID {
	t.Helper()
	ctx := context.Background()
	resp, err := creator.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "public_chat",
		PowerLevelOverride: &event.PowerLevelsEventContent{
			Users:  map[id.UserID]int{creator.UserID: 100},
			Events: map[string]int{TypeCallMemberUnstable: 0, TypeCallMember: 0, TypeCallUnstable: 50},
		},
	})
	if err != nil {
		t.Fatalf("createRoom: %v", err)
	}
	if _, err := creator.SendStateEvent(ctx, resp.RoomID, evCall, confID, map[string]any{
		"m.intent": "m.room", "m.type": "m.video", "m.name": "Test call",
	}); err != nil {
		t.Fatalf("m.call: %v", err)
	}
	return resp.RoomID
}

// gauge reads a gauge from a registry (0 if absent).
func gauge(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var v float64
			for _, m := range mf.GetMetric() {
				v += m.GetGauge().GetValue()
			}
			return v
		}
	}
	return 0
}

// counter sums a counter's series whose label has value (any label when
// value is "").
func counter(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := value == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					ok = true
				}
			}
			if ok {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}
