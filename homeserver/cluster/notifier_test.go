package cluster

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/clock"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// positions is a hand-written PositionReader: the test says what the
// database's committed position is.
type positions struct{ m atomic.Int64 }

func (p *positions) Max(context.Context) (int64, error) { return p.m.Load(), nil }

// TestNotifierKnowsKeysOnlyAlongTheChain drives one node with messages as
// other nodes would send them: a /sync stream may skip a query for a key
// only when every commit up to the node's position has reached it with
// its keys (an unbroken chain of batch links); with a link missing, every
// key may have changed until a database check closes the gap, which wakes
// every waiting request. The database checks run on a fake clock, by hand.
func TestNotifierKnowsKeysOnlyAlongTheChain(t *testing.T) {
	r := testkit.StartRedis(t)
	pos := &positions{}
	ctx := context.Background()
	n, err := New(ctx, Config{NodeID: "here", Redis: r.URL, Positions: pos, Clock: clock.NewFake(time.Unix(0, 0))},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if !n.RedisUp() {
		t.Fatal("the notifier did not subscribe to the test's redis-server")
	}
	n.Start(10)
	lastFor := func(step, key string, want int64) {
		t.Helper()
		if got := n.LastFor(key); got != want {
			t.Fatalf("%s: LastFor(%q) = %d, want %d", step, key, got, want)
		}
	}
	lastFor("start", "!a", 10)

	n.receive(`{"n":"there","p":11,"k":["!a"]}`)
	lastFor("keys before their link", "!b", 11)
	n.receive(`{"n":"there","l":[10,11]}`)
	lastFor("linked", "!a", 11)
	lastFor("linked", "!b", 10)
	if n.Position() != 11 {
		t.Fatalf("position %d, want 11", n.Position())
	}

	// The batch (11, 12] is lost; (12, 13] arrives.
	n.receive(`{"n":"there","p":13,"k":["!a"]}`)
	n.receive(`{"n":"there","l":[12,13]}`)
	lastFor("gap", "!b", 13)
	_, woken, cancel := n.Listen([]string{"!b"})
	defer cancel()

	// Redis is up: the first check only notes the position, giving the
	// messages one interval to arrive; the second closes the gap.
	pos.m.Store(13)
	n.checkNow(ctx, false)
	if s := n.Stats(); s.Repairs != 0 {
		t.Fatalf("a gap was closed at the first check: %+v", s)
	}
	n.checkNow(ctx, false)
	if s := n.Stats(); s.Repairs != 1 {
		t.Fatalf("the gap was not closed at the second check: %+v", s)
	}
	select {
	case <-woken:
	default:
		t.Fatal("closing the gap woke nobody")
	}
	lastFor("closed", "!b", 13)
	lastFor("closed", "!a", 13)

	// The chain goes on from the closed gap.
	n.receive(`{"n":"there","p":14,"k":["!a"]}`)
	n.receive(`{"n":"there","l":[13,14]}`)
	lastFor("after the gap", "!a", 14)
	lastFor("after the gap", "!b", 13)

	// A local batch links at once, before Redis brings it back.
	n.Notify(15, "!b")
	n.Committed(14, 15)
	lastFor("local", "!b", 15)
	lastFor("local", "!a", 14)

	// Its own messages and bad ones change nothing.
	before := n.Stats().Received
	n.receive(`{"n":"here","p":99,"k":["!a"]}`)
	n.receive(`{"n":"there","p":-1}`)
	n.receive(`not json`)
	if n.Stats().Received != before || n.Position() != 15 {
		t.Fatalf("own or bad messages were applied: %+v, position %d", n.Stats(), n.Position())
	}
}

// TestNotifierWithoutRedis: a node starts with Redis unreachable, wakes
// its waiters from the database checks, and counts nothing as published.
func TestNotifierWithoutRedis(t *testing.T) {
	pos := &positions{}
	ctx := context.Background()
	n, err := New(ctx, Config{NodeID: "alone", Redis: "redis://127.0.0.1:1/0", Positions: pos,
		Clock: clock.NewFake(time.Unix(0, 0)), SubscribeWait: 100 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.RedisUp() {
		t.Fatal("subscribed to a port where nothing listens")
	}
	n.Start(5)
	_, woken, cancel := n.Listen([]string{"!r"})
	defer cancel()
	pos.m.Store(7)
	n.checkNow(ctx, false) // Redis down: no grace
	select {
	case <-woken:
	default:
		t.Fatal("a commit found by the check woke nobody")
	}
	if n.Position() != 7 || n.LastFor("!r") != 7 {
		t.Fatalf("position %d, LastFor %d, want 7 and 7", n.Position(), n.LastFor("!r"))
	}
	n.Notify(8, "!r")
	if s := n.Stats(); s.Published != 0 || s.Dropped == 0 {
		t.Fatalf("with Redis down: %+v", s)
	}
}
