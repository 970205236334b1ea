package livekit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver"
	"github.com/switchboard-chat/switchboard/internal/testkit"
	"github.com/switchboard-chat/switchboard/sfu"
)

// The integration harness: a real homeserver with SQLite in a temporary
// directory, a real SFU on a loopback UDP socket, the token service and
// the signalling server on one loopback HTTP listener laid out as
// cmd/switchboard lays out the client listener, and mautrix clients.

const (
	testTimeout = 30 * time.Second
	testKey     = "switchboard"
	testSecret  = "0123456789abcdef0123456789abcdef-test"
)

type env struct {
	t      testing.TB
	hs     *homeserver.Server
	url    string // http://127.0.0.1:port
	sfuURL string // ws://127.0.0.1:port/livekit/sfu
	sfu    *sfu.SFU
	tokens *TokenService
	sig    *Server
}

func testLogger() *slog.Logger {
	if os.Getenv("SWITCHBOARD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type envOpts struct {
	server func(*ServerConfig)
	// skew, when set, is added to the homeserver's clock.
	skew *atomic.Int64
	// roomState gives the signalling server the homeserver's room state.
	roomState bool
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore, testkit.PionClosing) })
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	log := testLogger()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	// The listener comes first: the homeserver is told the SFU URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sfuURL := "ws://" + ln.Addr().String() + "/livekit/sfu"
	issuer := &testIssuer{}
	hs, err := homeserver.New(ctx, homeserver.Config{
		ServerName:   "test.local",
		Database:     filepath.Join(t.TempDir(), "hs.db"),
		Registration: homeserver.RegistrationOpen,
		SigningKey:   key,
		KeyID:        "ed25519:test",
		RateLimit:    homeserver.RateLimitConfig{Disabled: true},
		RTC:          homeserver.RTCConfig{LiveKitURLs: []string{sfuURL}, TokenIssuer: issuer},
		Now: func() time.Time {
			if o.skew == nil {
				return time.Now()
			}
			return time.Now().Add(time.Duration(o.skew.Load()))
		},
	}, log, nil)
	if err != nil {
		t.Fatalf("homeserver.New: %v", err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := sfu.New(sfu.Config{UDPMux: conn, AutoSubscribe: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	tokens, err := NewTokenService(TokenConfig{Homeserver: hs, ServerName: "test.local", APIKey: testKey,
		APISecret: testSecret, SFUURL: sfuURL, Logger: log, Delegate: func(ctx context.Context, m MatrixMember, delayID string) error {
			err := hs.DelegateDelayedLeave(ctx, rtcParticipant(m), delayID)
			var me *homeserver.MatrixError
			if errors.As(err, &me) && me.Status < http.StatusInternalServerError {
				return fmt.Errorf("%w: %s", ErrDelegation, me.Message)
			}
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	issuer.t = tokens
	// A participant whose socket dies is held for a resume only briefly
	// here (tests of resuming set their own window).
	scfg := ServerConfig{SFU: s, APIKey: testKey, APISecret: testSecret, Presence: hsPresence{hs}, Logger: log,
		ResumeWindow: 300 * time.Millisecond}
	if o.roomState {
		scfg.RoomState = hs
	}
	if o.server != nil {
		o.server(&scfg)
	}
	sig, err := NewServer(scfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/_matrix/", hs.ClientHandler())
	mux.Handle("/livekit/jwt/", tokens)
	mux.Handle("/livekit/sfu/", sig)
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() {
		sig.Close()
		srv.CloseClientConnections()
		srv.Close()
		if err := s.Close(); err != nil {
			t.Errorf("sfu Close: %v", err)
		}
		hs.Shutdown()
		if err := hs.Close(); err != nil {
			t.Errorf("homeserver Close: %v", err)
		}
	})
	return &env{t: t, hs: hs, url: base, sfuURL: sfuURL, sfu: s, tokens: tokens, sig: sig}
}

// testIssuer and hsPresence wire the homeserver to the token service and
// the signalling server as cmd/switchboard's livekitwire.go does.
type testIssuer struct{ t *TokenService }

func (i *testIssuer) IssueRTCToken(p homeserver.RTCParticipant) (string, error) {
	return i.t.IssueFor(MatrixMember{RoomID: p.RoomID, UserID: p.UserID, DeviceID: p.DeviceID,
		SlotID: p.SlotID, MemberID: p.MemberID})
}

type hsPresence struct{ hs *homeserver.Server }

func rtcParticipant(m MatrixMember) homeserver.RTCParticipant {
	return homeserver.RTCParticipant{UserID: m.UserID, RoomID: m.RoomID, SlotID: m.SlotID,
		MemberID: m.MemberID, DeviceID: m.DeviceID}
}

func (p hsPresence) ParticipantConnected(m MatrixMember) {
	p.hs.RTCParticipantConnected(rtcParticipant(m))
}

func (p hsPresence) ParticipantDisconnected(m MatrixMember) {
	p.hs.RTCParticipantDisconnected(rtcParticipant(m))
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

// room creates a public room.
func (e *env) room(t testing.TB, creator *mautrix.Client) id.RoomID {
	t.Helper()
	resp, err := creator.CreateRoom(context.Background(), &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatalf("createRoom: %v", err)
	}
	return resp.RoomID
}

// openID gets an OpenID token for cli.
func openID(t testing.TB, cli *mautrix.Client) map[string]any {
	t.Helper()
	tok, err := cli.RequestOpenIDToken(context.Background())
	if err != nil {
		t.Fatalf("openid: %v", err)
	}
	return map[string]any{"access_token": tok.AccessToken, "token_type": tok.TokenType,
		"matrix_server_name": tok.MatrixServerName, "expires_in": tok.ExpiresIn}
}

// post sends body (a value to encode, or raw []byte) to the token service
// path and returns the status and decoded JSON answer.
func (e *env) post(t testing.TB, path string, body any) (int, map[string]any) {
	t.Helper()
	var b []byte
	if raw, ok := body.([]byte); ok {
		b = raw
	} else {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Post(e.url+"/livekit/jwt"+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil && !strings.Contains(err.Error(), "EOF") {
		t.Fatalf("decoding answer: %v", err)
	}
	return resp.StatusCode, out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
