package homeserver

import (
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestFederationGapFilledWithStateIDs loses 30 of Bob's events on their
// way to A, one of them a change of his display name. His next message
// reaches A with unknown prev events: get_missing_events (20 at most)
// does not reach back to what A knows, so A fetches the state at the
// oldest still-missing event with /state_ids and /event. The message is
// then accepted with the right state: A's room shows Bob's new name,
// which A never received as a timeline event. The unknown events are
// fetched one by one, and (with StateByID -1) with /state.
func TestFederationGapFilledWithStateIDs(t *testing.T) {
	t.Run("by id", func(t *testing.T) { testGapFilled(t) })
	t.Run("whole state", func(t *testing.T) {
		testGapFilled(t, func(c *Config) { c.Federation.StateByID = -1 })
	})
}

func testGapFilled(t *testing.T, opts ...func(*Config)) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		p := joinedPair(t, b, opts...)
		a, bb, bob, room, ctx := p.a, p.b, p.bob, p.room, testCtx(t)

		var lost, markers []string
		for i := 0; i < 30; i++ {
			if i == 5 {
				markers = append(markers, `"Bob in the gap"`)
			} else {
				markers = append(markers, fmt.Sprintf(`"lost %d"`, i))
			}
		}
		loseTransactions(t, a, markers, func() {
			for i := 0; i < 30; i++ {
				var r *mautrix.RespSendEvent
				var err error
				if i == 5 {
					r, err = bob.SendStateEvent(ctx, room, event.StateMember, string(bob.UserID), map[string]any{"membership": "join", "displayname": "Bob in the gap"})
				} else {
					r, err = bob.SendText(ctx, room, fmt.Sprintf("lost %d", i))
				}
				if err != nil {
					t.Fatal(err)
				}
				lost = append(lost, string(r.EventID))
			}
		})
		after, err := bob.SendText(ctx, room, "after the gap")
		if err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 20*time.Second, "the message after the gap reaches A", func() bool {
			_, err := a.srv.db.Event(ctx, string(after.EventID))
			return err == nil
		})
		ev, err := a.srv.db.Event(ctx, string(after.EventID))
		if err != nil || ev.Outlier {
			t.Fatalf("the message after the gap is not in A's timeline: %+v %v", ev, err)
		}
		// The older events of the gap were never fetched as timeline
		// events; the state at them was.
		if e, err := a.srv.db.Event(ctx, lost[6]); err == nil && !e.Outlier {
			t.Fatalf("a lost event is in A's timeline although get_missing_events cannot reach it")
		}
		st, err := a.srv.db.CurrentStateEvent(ctx, string(room), "m.room.member", string(bob.UserID))
		if err != nil {
			t.Fatal(err)
		}
		if st.EventID != lost[5] {
			t.Fatalf("A's state has Bob's member event %s, want %s from the gap", st.EventID, lost[5])
		}
		if sa, sb := stateIDs(t, a, room), stateIDs(t, bb, room); sa != sb {
			t.Fatalf("states differ:\nA %s\nB %s", sa, sb)
		}
	})
}
