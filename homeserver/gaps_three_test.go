package homeserver

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// waitHeld polls n (on the federation's pace: 60 s under load) until the
// event is in its timeline.
func waitHeld(t *testing.T, n *fedNode, eventID id.EventID) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if e, err := n.srv.db.Event(context.Background(), string(eventID)); err == nil && !e.Outlier {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach %s", eventID, n.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncUntilEvent asks cli's /sync with the same since (on the federation's
// pace: 60 s under load) until room's timeline holds eventID, and returns
// that room's answer. An event is stored before /sync's committed-through
// position passes it, so the database holding it is not enough.
func syncUntilEvent(t *testing.T, cli *mautrix.Client, since string, room id.RoomID, eventID id.EventID) *mautrix.SyncJoinedRoom {
	t.Helper()
	var jr *mautrix.SyncJoinedRoom
	testkit.Eventually(t, 60*time.Second, "event "+string(eventID)+" in the /sync answer", func() bool {
		resp, err := cli.FullSyncRequest(context.Background(), mautrix.ReqSync{Since: since, FilterID: fedSyncFilter})
		if err != nil {
			t.Fatal(err)
		}
		jr = resp.Rooms.Join[room]
		return jr != nil && slices.ContainsFunc(jr.Timeline.Events, func(e *event.Event) bool { return e.ID == eventID })
	})
	return jr
}

// TestFederationThreeServerRejoinGap: alice (A, the room's host), bob (B)
// and carol (C) share a room. Carol leaves; alice and bob take turns
// saying 10 things (each seen by the other's server before the next);
// carol is invited back and rejoins. C saw none of the 10: carol's /sync
// is limited with a prev_batch, and paginating /messages from it returns
// all 10, from both servers, in order, right after carol's leave (the
// invite that follows opens the /sync timeline).
func TestFederationThreeServerRejoinGap(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		p := joinedPair(t, b)
		a, bb, alice, bob, room, ctx := p.a, p.b, p.alice, p.bob, p.room, testCtx(t)
		c := startFedNode(t, b)
		carol := c.user(t, "carol")
		carolSync := newFedSyncer(t, carol)
		if _, err := alice.SendStateEvent(ctx, room, event.StateHistoryVisibility, "", map[string]any{"history_visibility": "shared"}); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
			t.Fatal(err)
		}
		carolSync.until(func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Invite[room]; return ok })
		if _, err := carol.JoinRoomByID(ctx, room); err != nil {
			t.Fatal(err)
		}
		waitJoined(t, a, room, carol.UserID)
		waitJoined(t, bb, room, carol.UserID)
		before, err := alice.SendText(ctx, room, "before the leave")
		if err != nil {
			t.Fatal(err)
		}
		waitHeld(t, c, before.EventID)
		if _, err := carol.LeaveRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
		waitMembership(t, a, room, carol.UserID, "leave")
		waitMembership(t, bb, room, carol.UserID, "leave")
		var missed []string
		for i := 0; i < 10; i++ {
			sender, other := alice, bb
			if i%2 == 1 {
				sender, other = bob, a
			}
			body := fmt.Sprintf("missed %d from %s", i, sender.UserID.Homeserver())
			r, err := sender.SendText(ctx, room, body)
			if err != nil {
				t.Fatal(err)
			}
			waitHeld(t, other, r.EventID)
			missed = append(missed, body)
		}
		since := carolSync.since
		if _, err := alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
			t.Fatal(err)
		}
		carolSync.until(func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Invite[room]; return ok })
		if _, err := carol.JoinRoomByID(ctx, room); err != nil {
			t.Fatal(err)
		}
		after, err := bob.SendText(ctx, room, "after the rejoin")
		if err != nil {
			t.Fatal(err)
		}
		jr := syncUntilEvent(t, carol, since, room, after.EventID)
		if !jr.Timeline.Limited || jr.Timeline.PrevBatch == "" {
			t.Fatalf("the timeline after the rejoin is not limited (prev_batch %q)", jr.Timeline.PrevBatch)
		}
		for _, e := range jr.Timeline.Events {
			if body, _ := e.Content.Raw["body"].(string); slices.Contains(missed, body) || body == "before the leave" {
				t.Fatalf("the timeline after the gap holds %q, from before it", body)
			}
		}
		var order []string // newest first
		paginateBack(t, c.raw(), carol.AccessToken, room, jr.Timeline.PrevBatch, 4, map[string]bool{},
			historyOf(carol.UserID, "carol", &order), func() bool { return slices.Contains(order, "before the leave") })
		slices.Reverse(order)
		want := append([]string{"before the leave", "carol:leave"}, missed...)
		i := slices.Index(order, "before the leave")
		if i < 0 || len(order) < i+len(want) || !slices.Equal(order[i:i+len(want)], want) {
			t.Fatalf("paginating through the gap on C gave (oldest first)\n%q\nwant a run of\n%q", order, want)
		}
	})
}
