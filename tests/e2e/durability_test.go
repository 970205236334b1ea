package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestKill9KeepsAcknowledgedEvents: "an event that got a 200 is committed:
// kill -9 of the server right after loses no acknowledged event". Several
// goroutines send as fast as they can; the server is SIGKILLed while sends
// are in flight; after a restart on the same data, every event that got a
// 200 must be in /messages with its content, each retried in-flight
// transaction must be stored exactly once (transaction IDs are
// idempotent), and the account and room must still work.
func TestKill9KeepsAcknowledgedEvents(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			testKill9(t, b.database(t))
		})
	}
}

// sendOutcome is what the senders saw before and after the kill.
type sendOutcome struct {
	mu sync.Mutex // guards the fields below
	// acked maps the transaction ID (also the body) of every send that
	// got a 200 to the event ID the server returned.
	acked map[string]id.EventID
	// unknown are transactions whose outcome the client never learnt (in
	// flight when the server died).
	unknown []string
	// rejected are HTTP error responses (not connection failures) seen
	// before the kill: the server refusing a valid send is a bug.
	rejected []string
}

func testKill9(t *testing.T, database string) {
	const (
		senders   = 8
		perSender = 3000 // bound on each sender's loop
	)
	dataDir := t.TempDir()
	p := startServer(t, dataDir, database, "--rate-limit=false")
	cli := newClient(t, p.ClientURL())
	register(t, cli, "alice", "correct horse battery")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	room, err := cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "durability"})
	if err != nil {
		t.Fatalf("createRoom: %v", err)
	}
	roomID := room.RoomID

	// Kill after a random number of acknowledgements, so the kill lands at
	// a different point of the write path on each run.
	killAfter := int64(150 + rand.IntN(350))
	out := &sendOutcome{acked: make(map[string]id.EventID)}
	var ackCount, inFlight atomic.Int64
	var killed atomic.Bool
	var wg sync.WaitGroup
	for w := range senders {
		wg.Go(func() {
			for i := range perSender {
				txn := fmt.Sprintf("w%d-%d", w, i)
				inFlight.Add(1)
				resp, err := cli.SendMessageEvent(ctx, roomID, event.EventMessage,
					&event.MessageEventContent{MsgType: event.MsgText, Body: txn},
					mautrix.ReqSendEvent{TransactionID: txn})
				inFlight.Add(-1)
				out.mu.Lock()
				switch {
				case err == nil:
					out.acked[txn] = resp.EventID
					ackCount.Add(1)
				case !killed.Load():
					// Before the kill every send must succeed.
					out.rejected = append(out.rejected, fmt.Sprintf("%s: %v", txn, err))
				default:
					out.unknown = append(out.unknown, txn)
				}
				out.mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	sendersDone := make(chan struct{})
	go func() { wg.Wait(); close(sendersDone) }()
	testkit.Eventually(t, 90*time.Second, "acknowledged sends", func() bool {
		select {
		case <-sendersDone: // every sender stopped: an error, checked below
			return true
		default:
			return ackCount.Load() >= killAfter
		}
	})
	killed.Store(true)
	busy := inFlight.Load()
	p.Kill()
	wg.Wait()
	if len(out.rejected) > 0 {
		t.Fatalf("%d sends failed before the kill, e.g. %s", len(out.rejected), out.rejected[0])
	}
	t.Logf("SIGKILL after %d acknowledged sends with %d in flight; %d sends had no answer",
		len(out.acked), busy, len(out.unknown))
	if len(out.acked) == 0 {
		t.Fatal("no send was acknowledged")
	}

	// Restart on the same data directory and database.
	p2 := startServer(t, dataDir, database, "--rate-limit=false")
	cli.HomeserverURL = mustParseURL(t, p2.ClientURL())

	// The access token acknowledged at registration still works.
	who, err := cli.Whoami(ctx)
	if err != nil {
		t.Fatalf("whoami with the token issued before the kill: %v", err)
	}
	if who.UserID != cli.UserID {
		t.Fatalf("whoami: %s, want %s", who.UserID, cli.UserID)
	}

	got := roomMessages(t, ctx, cli, roomID)
	var missing []string
	for txn, evID := range out.acked {
		if bodies := got[evID]; bodies != txn {
			missing = append(missing, fmt.Sprintf("%s (%s, found %q)", txn, evID, bodies))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Fatalf("%d of %d acknowledged events lost after kill -9, e.g. %s",
			len(missing), len(out.acked), strings.Join(missing[:min(5, len(missing))], ", "))
	}

	// A client retries what it never got an answer for, with the same
	// transaction ID; acknowledged ones retried return the same event.
	retried := make(map[string]id.EventID)
	for _, txn := range out.unknown {
		resp, err := cli.SendMessageEvent(ctx, roomID, event.EventMessage,
			&event.MessageEventContent{MsgType: event.MsgText, Body: txn},
			mautrix.ReqSendEvent{TransactionID: txn})
		if err != nil {
			t.Fatalf("retry of in-flight transaction %s after restart: %v", txn, err)
		}
		retried[txn] = resp.EventID
	}
	n := 0
	for txn, evID := range out.acked {
		if n++; n > 20 {
			break
		}
		resp, err := cli.SendMessageEvent(ctx, roomID, event.EventMessage,
			&event.MessageEventContent{MsgType: event.MsgText, Body: txn},
			mautrix.ReqSendEvent{TransactionID: txn})
		if err != nil {
			t.Fatalf("retry of acknowledged transaction %s after restart: %v", txn, err)
		}
		if resp.EventID != evID {
			t.Errorf("retry of acknowledged transaction %s: event %s, first answer was %s", txn, resp.EventID, evID)
		}
	}

	// The account and room still take new events, seen by /sync too.
	last, err := cli.SendText(ctx, roomID, "after restart")
	if err != nil {
		t.Fatalf("send after restart: %v", err)
	}
	got = roomMessages(t, ctx, cli, roomID)
	count := make(map[string]int)
	for _, body := range got {
		count[body]++
	}
	for txn, evID := range retried {
		if count[txn] != 1 || got[evID] != txn {
			t.Errorf("in-flight transaction %s stored %d times after its retry (retry answered %s)", txn, count[txn], evID)
		}
	}
	for txn := range out.acked {
		if count[txn] != 1 {
			t.Errorf("acknowledged transaction %s stored %d times", txn, count[txn])
		}
	}
	if got[last.EventID] != "after restart" {
		t.Errorf("event sent after restart (%s) not in /messages", last.EventID)
	}
	sync, err := cli.FullSyncRequest(ctx, mautrix.ReqSync{Timeout: 0})
	if err != nil {
		t.Fatalf("/sync after restart: %v", err)
	}
	jr, ok := sync.Rooms.Join[roomID]
	if !ok {
		t.Fatalf("/sync after restart: room %s not joined", roomID)
	}
	if evs := jr.Timeline.Events; len(evs) == 0 || evs[len(evs)-1].ID != last.EventID {
		t.Errorf("/sync after restart: timeline does not end with %s", last.EventID)
	}

	code, err := p2.Stop(30 * time.Second)
	if err != nil || code != 0 {
		t.Errorf("SIGTERM after the checks: exit %d, %v", code, err)
	}
}

// roomMessages pages /messages backwards from the end of the room and
// returns the body of every m.room.message by event ID.
func roomMessages(t *testing.T, ctx context.Context, cli *mautrix.Client, roomID id.RoomID) map[id.EventID]string {
	t.Helper()
	got := make(map[id.EventID]string)
	from := ""
	for page := 0; ; page++ {
		if page > 1000 {
			t.Fatal("/messages: more than 1000 pages")
		}
		resp, err := cli.Messages(ctx, roomID, from, "", mautrix.DirectionBackward, nil, 500)
		if err != nil {
			t.Fatalf("/messages from %q: %v", from, err)
		}
		for _, ev := range resp.Chunk {
			if ev.Type != event.EventMessage {
				continue
			}
			if _, dup := got[ev.ID]; dup {
				t.Fatalf("/messages returned %s twice", ev.ID)
			}
			body, _ := ev.Content.Raw["body"].(string)
			got[ev.ID] = body
		}
		if len(resp.Chunk) == 0 || resp.End == "" || resp.End == from {
			return got
		}
		from = resp.End
	}
}

// mustParseURL parses a server's base URL.
func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := mautrix.ParseAndNormalizeBaseURL(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
