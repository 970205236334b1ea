package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/cluster"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// waitListening returns once nd has a /sync request waiting on key.
func waitListening(t *testing.T, ctx context.Context, nd *node, key string) {
	t.Helper()
	if err := testkit.Poll(ctx, func() bool { return nd.notify.Waiting(key) > 0 }); err != nil {
		t.Fatalf("waiting for a /sync long-poll of %s on node %s: %v", key, nd.name, err)
	}
}

// TestTwoNodes runs two homeserver nodes on one PostgreSQL and one Redis:
// a message sent on node a wakes a long-poll on node b; a client
// transaction retried on node b (also at the same moment on both) makes
// no second event; with Redis killed, delivery goes on through the
// database checks; with Redis back, wake-ups flow through it again.
func TestTwoNodes(t *testing.T) {
	c := startCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	ctx := testCtx(t, 8*time.Minute)

	alice, bob, room := aliceAndBob(t, ctx, a, b)
	filter := bigTimeline(t, ctx, bob)
	first, err := bob.SyncRequest(ctx, 0, "", filter, false, "")
	if err != nil {
		t.Fatal(err)
	}
	since := first.NextBatch
	seen := make(map[id.EventID]int)
	var seenMu sync.Mutex

	// send sends body from alice on node a while bob long-polls on node b,
	// and checks that the long-poll returns with it.
	send := func(step, txnID string) id.EventID {
		t.Helper()
		// Bob long-polls on node b in a loop (an answer may hold other
		// things: earlier messages, notification counts), recording every
		// message; a long-poll that ends empty was never woken.
		sctx, stop := context.WithCancel(ctx)
		failed := make(chan error, 1)
		exited := make(chan struct{})
		go func() {
			defer close(exited)
			for {
				resp, err := bob.SyncRequest(sctx, 120000, since, filter, false, "")
				if sctx.Err() != nil {
					return
				}
				if err == nil && resp.NextBatch == since {
					err = fmt.Errorf("a long-poll on node b timed out: never woken")
				}
				if err != nil {
					failed <- err
					return
				}
				since = resp.NextBatch
				seenMu.Lock()
				for _, ev := range messages(t, resp, room) {
					seen[ev.ID]++
				}
				seenMu.Unlock()
			}
		}()
		waitListening(t, ctx, b, bob.UserID.String())
		resp, err := alice.SendMessageEvent(ctx, room, event.EventMessage,
			map[string]any{"msgtype": "m.text", "body": step}, mautrix.ReqSendEvent{TransactionID: txnID})
		if err != nil {
			t.Fatalf("%s: send on node a: %v", step, err)
		}
		var ferr error
		err = testkit.Poll(ctx, func() bool {
			select {
			case ferr = <-failed:
				return true
			default:
			}
			seenMu.Lock()
			defer seenMu.Unlock()
			return seen[resp.EventID] > 0
		})
		stop()
		<-exited
		if ferr != nil || err != nil {
			t.Fatalf("%s: bob on node b never got %s: %v %v", step, resp.EventID, ferr, err)
		}
		return resp.EventID
	}

	// 1. Redis up: node b's long-poll is woken by node a's message.
	// Node b may also learn of a commit of node a by committing after it
	// (its push scanner stores bob's notification of the message), so the
	// counters are asked until they show the path each step is about.
	stat := func(what string, cond func(s cluster.Stats) bool) {
		t.Helper()
		if err := testkit.Poll(ctx, func() bool { return cond(b.notify.Stats()) }); err != nil {
			t.Errorf("%s (%+v): %v", what, b.notify.Stats(), err)
		}
	}
	before := b.notify.Stats()
	ev1 := send("hello over redis", "txn-1")
	stat("node b received no wake-up from node a", func(s cluster.Stats) bool { return s.Received > before.Received })

	// 2. The same transaction retried on node b is the same event.
	retry, err := b.on(t, alice).SendMessageEvent(ctx, room, event.EventMessage,
		map[string]any{"msgtype": "m.text", "body": "hello over redis"}, mautrix.ReqSendEvent{TransactionID: "txn-1"})
	if err != nil {
		t.Fatal(err)
	}
	if retry.EventID != ev1 {
		t.Fatalf("txn-1 retried on node b gave %s, first send gave %s", retry.EventID, ev1)
	}
	// The same transactions sent on both nodes at once: one event each.
	aliceB := b.on(t, alice)
	for i := range 10 {
		txn := fmt.Sprintf("race-%d", i)
		var ids [2]id.EventID
		var wg sync.WaitGroup
		for j, cli := range []*mautrix.Client{alice, aliceB} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := cli.SendMessageEvent(ctx, room, event.EventMessage,
					map[string]any{"msgtype": "m.text", "body": txn}, mautrix.ReqSendEvent{TransactionID: txn})
				if err != nil {
					t.Errorf("%s on node %d: %v", txn, j, err)
					return
				}
				ids[j] = resp.EventID
			}()
		}
		wg.Wait()
		if ids[0] == "" || ids[0] != ids[1] {
			t.Fatalf("%s sent on both nodes at once gave %q and %q", txn, ids[0], ids[1])
		}
	}

	// 3. Redis killed: delivery goes on through the database checks.
	c.redis.Stop()
	for _, nd := range c.nodes {
		if err := testkit.Poll(ctx, func() bool { return !nd.notify.RedisUp() }); err != nil {
			t.Fatalf("node %s never noticed Redis was gone: %v", nd.name, err)
		}
	}
	before = b.notify.Stats()
	send("hello without redis", "txn-2")
	stat("node b never caught up from the database without Redis", func(s cluster.Stats) bool { return s.Repairs > before.Repairs })

	// 4. Redis back: wake-ups go through it again.
	c.redis.Start()
	for _, nd := range c.nodes {
		if err := testkit.Poll(ctx, func() bool { return nd.notify.RedisUp() }); err != nil {
			t.Fatalf("node %s never came back to Redis: %v", nd.name, err)
		}
	}
	before = b.notify.Stats()
	send("hello again over redis", "txn-3")
	stat("node b received no wake-up from node a after Redis returned", func(s cluster.Stats) bool { return s.Received > before.Received })

	// Every message bob saw, he saw once; the raced transactions made one
	// event each (read back from node a).
	seenMu.Lock()
	for evID, n := range seen {
		if n != 1 {
			t.Errorf("bob saw %s %d times", evID, n)
		}
	}
	seenMu.Unlock()
	all, err := alice.SyncRequest(ctx, 0, "", bigTimeline(t, ctx, alice), false, "")
	if err != nil {
		t.Fatal(err)
	}
	bodies := make(map[string]int)
	for _, ev := range messages(t, all, room) {
		body, _ := ev.Content.Raw["body"].(string)
		bodies[body]++
	}
	for i := range 10 {
		if n := bodies[fmt.Sprintf("race-%d", i)]; n != 1 {
			t.Errorf("race-%d is in the room %d times", i, n)
		}
	}
	if n := bodies["hello over redis"]; n != 1 {
		t.Errorf("txn-1 is in the room %d times", n)
	}
}

// TestTwoNodesConcurrentSenders: senders on both nodes write one room at
// once while a reader on each node follows it with incremental /sync.
// Every reader sees every message exactly once and in the same order, and
// each sender's messages in the order sent: no position a reader could
// skip (positions commit in order across nodes, storage/cluster.go).
func TestTwoNodesConcurrentSenders(t *testing.T) {
	c := startCluster(t, 2)
	ctx := testCtx(t, 5*time.Minute)
	const perNode, each = 4, 20

	owner := c.nodes[0].register(t, "owner")
	room, err := owner.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	join := func(cli *mautrix.Client) {
		t.Helper()
		if _, err := cli.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatalf("%s joins: %v", cli.UserID, err)
		}
	}
	var senders []*mautrix.Client
	for _, nd := range c.nodes {
		for i := range perNode {
			cli := nd.register(t, fmt.Sprintf("sender-%s%d", nd.name, i))
			join(cli)
			senders = append(senders, cli)
		}
	}
	type reader struct {
		cli    *mautrix.Client
		filter string
		since  string
		got    []string
	}
	var readers []*reader
	for _, nd := range c.nodes {
		cli := nd.register(t, "reader-"+nd.name)
		join(cli)
		f := bigTimeline(t, ctx, cli)
		resp, err := cli.SyncRequest(ctx, 0, "", f, false, "")
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, &reader{cli: cli, filter: f, since: resp.NextBatch})
	}
	total := len(senders) * each

	var wg sync.WaitGroup
	for _, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for len(r.got) < total && ctx.Err() == nil {
				resp, err := r.cli.SyncRequest(ctx, 30000, r.since, r.filter, false, "")
				if err != nil {
					t.Errorf("%s: sync: %v", r.cli.UserID, err)
					return
				}
				r.since = resp.NextBatch
				for _, ev := range messages(t, resp, room.RoomID) {
					body, _ := ev.Content.Raw["body"].(string)
					r.got = append(r.got, body)
				}
			}
		}()
	}
	var sends sync.WaitGroup
	for i, cli := range senders {
		sends.Add(1)
		go func() {
			defer sends.Done()
			for j := range each {
				body := fmt.Sprintf("s%d-%d", i, j)
				if _, err := cli.SendMessageEvent(ctx, room.RoomID, event.EventMessage,
					map[string]any{"msgtype": "m.text", "body": body}); err != nil {
					t.Errorf("%s: %v", body, err)
					return
				}
			}
		}()
	}
	start := time.Now()
	sends.Wait()
	t.Logf("%d sends from %d senders on 2 nodes took %v", total, len(senders), time.Since(start))
	wg.Wait()
	t.Logf("the readers had every message %v after the first send", time.Since(start))

	for _, r := range readers {
		if len(r.got) != total {
			t.Fatalf("%s saw %d messages, want %d", r.cli.UserID, len(r.got), total)
		}
		count := make(map[string]int)
		next := make([]int, len(senders))
		for _, body := range r.got {
			count[body]++
			var i, j int
			if _, err := fmt.Sscanf(body, "s%d-%d", &i, &j); err != nil || i >= len(senders) {
				t.Fatalf("%s saw an unknown message %q", r.cli.UserID, body)
			}
			if j != next[i] {
				t.Fatalf("%s saw %q where s%d-%d was next", r.cli.UserID, body, i, next[i])
			}
			next[i]++
		}
		for body, n := range count {
			if n != 1 {
				t.Errorf("%s saw %q %d times", r.cli.UserID, body, n)
			}
		}
	}
	if !slices.Equal(readers[0].got, readers[1].got) {
		t.Errorf("the readers on the two nodes saw the messages in different orders")
	}
}
