package homeserver

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
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
		waitHeld(t, c, after.EventID)
		resp, err := carol.FullSyncRequest(ctx, mautrix.ReqSync{Since: since, FilterID: fedSyncFilter})
		if err != nil {
			t.Fatal(err)
		}
		jr := resp.Rooms.Join[room]
		if jr == nil || !slices.ContainsFunc(jr.Timeline.Events, func(e *event.Event) bool { return e.ID == after.EventID }) {
			t.Fatalf("carol's sync after the rejoin lacks the room or its last message: %+v", jr)
		}
		if !jr.Timeline.Limited || jr.Timeline.PrevBatch == "" {
			t.Fatalf("the timeline after the rejoin is not limited (prev_batch %q)", jr.Timeline.PrevBatch)
		}
		for _, e := range jr.Timeline.Events {
			if body, _ := e.Content.Raw["body"].(string); slices.Contains(missed, body) || body == "before the leave" {
				t.Fatalf("the timeline after the gap holds %q, from before it", body)
			}
		}
		ts := c.raw()
		from := jr.Timeline.PrevBatch
		var order []string // newest first
		seen := map[string]bool{}
		for page := 0; page < 20; page++ {
			r := ts.do(t, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+"/messages?dir=b&limit=4&from="+url.QueryEscape(from), carol.AccessToken, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("/messages: %d %s", r.Status, r.Raw)
			}
			chunk, _ := r.Body["chunk"].([]any)
			for _, x := range chunk {
				ev, _ := x.(map[string]any)
				eid, _ := ev["event_id"].(string)
				if seen[eid] {
					t.Fatalf("event %s served twice", eid)
				}
				seen[eid] = true
				content, _ := ev["content"].(map[string]any)
				switch ev["type"] {
				case "m.room.message":
					if body, ok := content["body"].(string); ok {
						order = append(order, body)
					}
				case "m.room.member":
					if ev["state_key"] == string(carol.UserID) {
						order = append(order, "carol:"+content["membership"].(string))
					}
				}
			}
			end, _ := r.Body["end"].(string)
			if slices.Contains(order, "before the leave") || end == "" {
				break
			}
			from = end
		}
		slices.Reverse(order)
		want := append([]string{"before the leave", "carol:leave"}, missed...)
		i := slices.Index(order, "before the leave")
		if i < 0 || len(order) < i+len(want) || !slices.Equal(order[i:i+len(want)], want) {
			t.Fatalf("paginating through the gap on C gave (oldest first)\n%q\nwant a run of\n%q", order, want)
		}
	})
}
