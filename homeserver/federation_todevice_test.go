package homeserver

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestFederationToDevice sends to-device messages from a user on A to a
// device on B, then again while B is down: the queue keeps them and
// delivers them, in order, once B is back.
func TestFederationToDevice(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		// Registered first, so it runs after the nodes stopped: the
		// queue's scanner and senders and the peer connections are gone.
		ignore := goleak.IgnoreCurrent()
		t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
		a, bb := startFedNode(t, b), startFedNode(t, b)
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		first, err := bob.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		send := func(i int) {
			t.Helper()
			_, err := alice.SendToDevice(ctx, event.NewEventType("org.example.ping"), &mautrix.ReqSendToDevice{
				Messages: map[id.UserID]map[id.DeviceID]*event.Content{bob.UserID: {bob.DeviceID: {Raw: map[string]any{"n": i}}}},
			})
			if err != nil {
				t.Fatalf("send to-device %d: %v", i, err)
			}
		}
		var got []int
		collect := func(r *mautrix.RespSync) {
			for _, ev := range r.ToDevice.Events {
				if ev.Sender != alice.UserID || ev.Type.Type != "org.example.ping" {
					t.Fatalf("unexpected to-device event %+v", ev)
				}
				n, _ := ev.Content.Raw["n"].(float64)
				got = append(got, int(n))
			}
		}
		send(0)
		since := syncUntil(t, bob, first.NextBatch, func(r *mautrix.RespSync) bool { collect(r); return len(got) >= 1 })

		bb.stop()
		for i := 1; i <= 10; i++ {
			send(i)
		}
		bb.restart()
		syncUntil(t, bob, since, func(r *mautrix.RespSync) bool { collect(r); return len(got) >= 11 })
		if fmt.Sprint(got) != fmt.Sprint([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
			t.Fatalf("to-device messages arrived as %v", got)
		}
	})
}

// TestFederationTypingAndReceipts checks that typing notifications and
// read receipts of a user on A reach a user on B through /sync.
func TestFederationTypingAndReceipts(t *testing.T) {
	b := storagetest.Backends(t)[0]
	a, bb := startFedNode(t, b), startFedNode(t, b)
	ctx := testCtx(t)
	alice, bob := a.user(t, "alice"), bb.user(t, "bob")
	bobSync := newFedSyncer(t, bob)
	room := joinAcross(t, ctx, alice, bob, bobSync)
	sent, err := bob.SendText(ctx, room, "read me")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.UserTyping(ctx, room, true, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	bobSync.until(func(r *mautrix.RespSync) bool {
		jr, ok := r.Rooms.Join[room]
		if !ok || jr == nil {
			return false
		}
		for _, ev := range jr.Ephemeral.Events {
			if ev.Type == event.EphemeralEventTyping && strings.Contains(fmt.Sprint(ev.Content.Raw["user_ids"]), string(alice.UserID)) {
				return true
			}
		}
		return false
	})
	// Alice must have the event before she can acknowledge it.
	deadline := time.Now().Add(fedWait)
	for {
		if _, err := a.srv.db.Event(ctx, string(sent.EventID)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob's message did not reach A")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := alice.SendReceipt(ctx, room, sent.EventID, event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	bobSync.until(func(r *mautrix.RespSync) bool {
		jr, ok := r.Rooms.Join[room]
		if !ok || jr == nil {
			return false
		}
		for _, ev := range jr.Ephemeral.Events {
			if ev.Type == event.EphemeralEventReceipt && strings.Contains(fmt.Sprint(ev.Content.Raw), string(alice.UserID)) {
				return true
			}
		}
		return false
	})
}
