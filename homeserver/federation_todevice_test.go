package homeserver

import (
	"fmt"
	"testing"

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
