package homeserver

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// stateIDs is a room's current state on a node as "type|state_key=event".
func stateIDs(t *testing.T, n *fedNode, roomID id.RoomID) string {
	t.Helper()
	st, err := n.srv.db.CurrentState(context.Background(), string(roomID))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range st {
		out = append(out, e.Type+"|"+*e.StateKey+"="+e.EventID)
	}
	sort.Strings(out)
	return fmt.Sprint(out)
}

// TestFederationConvergence changes the same room's state on both sides
// while the link between them is cut (name, topic, power levels,
// membership), restores it, and checks that both servers end with the
// same state (state resolution v2).
func TestFederationConvergence(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb := startFedNode(t, b), startFedNode(t, b)
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		dave := a.user(t, "dave")
		bobSync := newFedSyncer(t, bob)
		room := joinAcross(t, ctx, alice, bob, bobSync)
		// Bob gets power 100 so that both can change anything.
		pl := map[string]any{"users": map[string]any{string(alice.UserID): 100, string(bob.UserID): 100}, "users_default": 0,
			"events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0}
		if _, err := alice.SendStateEvent(ctx, room, event.StatePowerLevels, "", pl); err != nil {
			t.Fatal(err)
		}
		bobSync.until(func(r *mautrix.RespSync) bool {
			jr, ok := r.Rooms.Join[room]
			if !ok {
				return false
			}
			for _, ev := range append(jr.Timeline.Events, jr.State.Events...) {
				if ev.Type == event.StatePowerLevels && ev.Sender == alice.UserID {
					return true
				}
			}
			return false
		})
		waitSame := func(what string) {
			t.Helper()
			deadline := time.Now().Add(fedWait)
			for {
				sa, sb := stateIDs(t, a, room), stateIDs(t, bb, room)
				if sa == sb {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: states differ:\nA %s\nB %s", what, sa, sb)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		waitSame("before the cut")

		a.cut()
		bb.cut()
		mustState := func(cli *mautrix.Client, typ event.Type, key string, content any) {
			t.Helper()
			if _, err := cli.SendStateEvent(ctx, room, typ, key, content); err != nil {
				t.Fatalf("%s %s: %v", cli.UserID, typ.Type, err)
			}
		}
		mustState(alice, event.StateRoomName, "", map[string]any{"name": "named on A"})
		mustState(bob, event.StateRoomName, "", map[string]any{"name": "named on B"})
		mustState(bob, event.StateTopic, "", map[string]any{"topic": "topic from B"})
		pl2 := map[string]any{"users": map[string]any{string(alice.UserID): 100, string(bob.UserID): 100, string(dave.UserID): 50}, "users_default": 0,
			"events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0}
		mustState(alice, event.StatePowerLevels, "", pl2)
		if _, err := alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: dave.UserID}); err != nil {
			t.Fatal(err)
		}
		if _, err := dave.JoinRoomByID(ctx, room); err != nil {
			t.Fatal(err)
		}
		mustState(bob, event.StateRoomName, "", map[string]any{"name": "renamed on B"})

		if stateIDs(t, a, room) == stateIDs(t, bb, room) {
			t.Fatal("the link was not cut: both sides already agree")
		}
		a.restore()
		bb.restore()
		// Each side's queue retries within its backoff and the forks merge.
		if _, err := alice.SendText(ctx, room, "after"); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.SendText(ctx, room, "after"); err != nil {
			t.Fatal(err)
		}
		waitSame("after the cut")
		// And the merged state is what resolution says: every change of
		// either side that did not conflict survived.
		st := stateIDs(t, a, room)
		members, err := alice.JoinedMembers(ctx, room)
		if err != nil || len(members.Joined) != 3 {
			t.Fatalf("members after merge: %d (%v); state %s", len(members.Joined), err, st)
		}
		var topic struct {
			Topic string `json:"topic"`
		}
		if err := bob.StateEvent(ctx, room, event.StateTopic, "", &topic); err != nil || topic.Topic != "topic from B" {
			t.Fatalf("topic after merge: %q %v", topic.Topic, err)
		}
	})
}
