package cluster_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver"
	"github.com/switchboard-chat/switchboard/homeserver/cluster"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// node is one homeserver node of a test cluster.
type node struct {
	name   string
	URL    string
	hs     *homeserver.Server
	notify *cluster.Notifier
}

// testCluster is n homeserver nodes (in-process homeserver.New, each with
// its own HTTP listener) on one fresh PostgreSQL database and one
// redis-server started for the test.
type testCluster struct {
	redis *testkit.Redis
	nodes []*node
}

// needPostgres skips where SWITCHBOARD_TEST_POSTGRES is not set, as the
// other PostgreSQL-only tests do; make test sets it in CI.
func needPostgres(t *testing.T) {
	if os.Getenv(storagetest.EnvPostgres) == "" {
		t.Skipf("%s is not set (PostgreSQL legs run under make test; several nodes need PostgreSQL)", storagetest.EnvPostgres)
	}
}

func startCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	needPostgres(t)
	dsn := storagetest.NewPostgresDB(t)
	r := testkit.StartRedis(t)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("SWITCHBOARD_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c := &testCluster{redis: r}
	for i := range n {
		name := string(rune('a' + i))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		positions, err := storage.OpenPositions(dsn)
		if err != nil {
			t.Fatal(err)
		}
		notify, err := cluster.New(ctx, cluster.Config{NodeID: "node-" + name, Redis: r.URL, Positions: positions}, log.With("node", name))
		if err != nil {
			t.Fatal(err)
		}
		hs, err := homeserver.New(ctx, homeserver.Config{
			ServerName:   "test.local",
			Database:     dsn,
			Registration: homeserver.RegistrationOpen,
			SigningKey:   key,
			KeyID:        "ed25519:test",
			RateLimit:    homeserver.RateLimitConfig{Disabled: true},
			Federation:   homeserver.FederationConfig{Resolver: offlineResolver()},
			Notifier:     notify,
			Cluster:      notify,
			Ephemeral:    notify.Ephemeral(),
		}, log.With("node", name), nil)
		cancel()
		if err != nil {
			t.Fatalf("node %s: homeserver.New: %v", name, err)
		}
		srv := httptest.NewServer(hs.ClientHandler())
		t.Cleanup(func() {
			hs.Shutdown()
			srv.Close()
			hs.Close()
			notify.Close()
			positions.Close()
		})
		c.nodes = append(c.nodes, &node{name: name, URL: srv.URL, hs: hs, notify: notify})
	}
	return c
}

func offlineResolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("test resolver: no DNS")
	}}
}

// register makes a user through nd and returns a client logged in there.
func (nd *node) register(t *testing.T, localpart string) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(nd.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.RegisterDummy(context.Background(), &mautrix.ReqRegister[any]{Username: localpart, Password: "password"})
	if err != nil {
		t.Fatalf("register %s on node %s: %v", localpart, nd.name, err)
	}
	cli.UserID, cli.AccessToken, cli.DeviceID = resp.UserID, resp.AccessToken, resp.DeviceID
	return cli
}

// on returns a client of the same device talking to nd.
func (nd *node) on(t *testing.T, cli *mautrix.Client) *mautrix.Client {
	t.Helper()
	other, err := mautrix.NewClient(nd.URL, cli.UserID, cli.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	other.DeviceID = cli.DeviceID
	return other
}

// bigTimeline is a filter whose timelines are never cut in these tests.
// aliceAndBob registers alice on node a and bob on node b, and has bob
// join, through b, a public room alice creates through a.
func aliceAndBob(t *testing.T, ctx context.Context, a, b *node) (alice, bob *mautrix.Client, room id.RoomID) {
	t.Helper()
	alice, bob = a.register(t, "alice"), b.register(t, "bob")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, created.RoomID); err != nil {
		t.Fatalf("bob joins through node b: %v", err)
	}
	return alice, bob, created.RoomID
}

func bigTimeline(t *testing.T, ctx context.Context, cli *mautrix.Client) string {
	t.Helper()
	resp, err := cli.CreateFilter(ctx, &mautrix.Filter{Room: &mautrix.RoomFilter{Timeline: &mautrix.FilterPart{Limit: 5000}}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.FilterID
}

// messages returns the m.room.message events of roomID in a sync answer,
// and fails on a cut (limited) timeline.
func messages(t *testing.T, resp *mautrix.RespSync, roomID id.RoomID) []*event.Event {
	t.Helper()
	r, ok := resp.Rooms.Join[roomID]
	if !ok {
		return nil
	}
	if r.Timeline.Limited {
		t.Errorf("timeline of %s is limited: the test expects every event in /sync", roomID)
		return nil
	}
	var out []*event.Event
	for _, ev := range r.Timeline.Events {
		if ev.Type == event.EventMessage {
			out = append(out, ev)
		}
	}
	return out
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
