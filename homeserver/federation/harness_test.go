package federation

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/clock"
)

// The small fakes New needs; the homeserver's two-server tests run the
// real ones.

type fakeLocal struct{}

func (fakeLocal) Profile(context.Context, string) map[string]any            { return map[string]any{} }
func (fakeLocal) Visibility(string, string) Visibility                      { return allVisible{} }
func (fakeLocal) ValidAlias(string) bool                                    { return false }
func (fakeLocal) OpenIDUserInfo(context.Context, string) (string, error)    { return "", errors.New("no") }
func (fakeLocal) DeliverToServices(m []storage.ToDevice) []storage.ToDevice { return m }
func (fakeLocal) PublicRooms(context.Context, int, string) (map[string]any, error) {
	return map[string]any{"chunk": []any{}}, nil
}

type allVisible struct{}

func (allVisible) Visible(context.Context, storage.Event) (bool, error) { return true, nil }

type fakeEphemeral struct{}

func (fakeEphemeral) SetTyping(string, string, bool, time.Duration) {}
func (fakeEphemeral) SetPresence(context.Context, string, Presence) {}
func (fakeEphemeral) Presence(string) (Presence, bool)              { return Presence{}, false }

type fakePositions struct{}

func (fakePositions) Position() int64      { return 0 }
func (fakePositions) LastFor(string) int64 { return 0 }

// newTestService is a Service on real storage (backend b) that reaches no
// other server: its resolver answers nothing.
func newTestService(t testing.TB, b storagetest.Backend, clk clock.Clock, opts ...func(*Config)) *Service {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, b.Open(t), func(int64, []string) {})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, key, _ := ed25519.GenerateKey(nil)
	rs, err := rooms.New(rooms.Config{ServerName: "local.test", KeyID: "ed25519:t", SigningKey: key, Now: clk.Now,
		CheckJSON: func([]byte) error { return nil }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		ServerName: "local.test", KeyID: "ed25519:t", SigningKey: key,
		Options: Options{Resolver: &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("test resolver: no DNS")
		}}},
		DB: db, Rooms: rs, Clock: clk, Local: fakeLocal{}, Ephemeral: fakeEphemeral{}, Positions: fakePositions{},
		HTTP: HTTPHooks{
			RenderError: func(err error, c echo.Context) { _ = c.JSON(500, map[string]string{"error": err.Error()}) },
			LogRequests: func(next echo.HandlerFunc) echo.HandlerFunc { return next },
			Limit:       func(string) error { return nil },
		},
		JSON: JSONChecks{Canonical: canonicalEnough, Request: canonicalEnough},
	}
	for _, o := range opts {
		o(&cfg)
	}
	f, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// canonicalEnough stands in for the homeserver's strict JSON checks: valid
// JSON only.
func canonicalEnough(b []byte) error {
	if !json.Valid(b) {
		return errors.New("invalid JSON")
	}
	return nil
}
