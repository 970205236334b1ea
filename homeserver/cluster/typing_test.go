package cluster_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// typingIn returns the user IDs of the last m.typing of roomID in a sync
// answer, and whether there was one.
func typingIn(resp *mautrix.RespSync, roomID id.RoomID) ([]id.UserID, bool) {
	r, ok := resp.Rooms.Join[roomID]
	if !ok {
		return nil, false
	}
	var users []id.UserID
	found := false
	for _, ev := range r.Ephemeral.Events {
		if ev.Type != event.EphemeralEventTyping {
			continue
		}
		found = true
		users = nil
		if list, ok := ev.Content.Raw["user_ids"].([]any); ok {
			for _, u := range list {
				if s, ok := u.(string); ok {
					users = append(users, id.UserID(s))
				}
			}
		}
	}
	return users, found
}

// TestTwoNodesTyping: alice starts and stops typing through node a; bob's
// long-poll on node b is woken each time and sees it.
func TestTwoNodesTyping(t *testing.T) {
	c := startCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	ctx := testCtx(t, 4*time.Minute)
	alice, bob, room := aliceAndBob(t, ctx, a, b)
	first, err := bob.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	since := first.NextBatch
	for _, typing := range []bool{true, false} {
		type answer struct {
			users []id.UserID
			err   error
		}
		got := make(chan answer, 1)
		go func() {
			s := since
			for {
				resp, err := bob.SyncRequest(ctx, 120000, s, "", false, "")
				if err != nil {
					got <- answer{err: err}
					return
				}
				if resp.NextBatch == s {
					got <- answer{err: context.DeadlineExceeded}
					return
				}
				s = resp.NextBatch
				if users, ok := typingIn(resp, room); ok {
					since = s
					got <- answer{users: users}
					return
				}
			}
		}()
		waitListening(t, ctx, b, bob.UserID.String())
		if _, err := alice.UserTyping(ctx, room, typing, 30*time.Second); err != nil {
			t.Fatalf("typing %v on node a: %v", typing, err)
		}
		ans := <-got
		if ans.err != nil {
			t.Fatalf("bob waiting on node b for typing %v: %v", typing, ans.err)
		}
		if slices.Contains(ans.users, alice.UserID) != typing {
			t.Fatalf("typing %v: bob on node b sees %v typing", typing, ans.users)
		}
	}
}
