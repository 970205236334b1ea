package homeserver

import (
	"fmt"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestFederationBackfillAfterJoin has Bob join a room with 30 messages of
// history on A: paging backwards from his join, his server backfills it
// from A, in order, down to the room's creation, and /sync never sends
// those old events as new ones.
func TestFederationBackfillAfterJoin(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb := startFedNode(t, b), startFedNode(t, b)
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		bobSync := newFedSyncer(t, bob)
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "History", Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		const n = 30
		for i := 0; i < n; i++ {
			if _, err := alice.SendText(ctx, room.RoomID, fmt.Sprintf("history %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
			t.Fatal(err)
		}
		bobSync.until(func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Invite[room.RoomID]; return ok })
		if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		// Page back from the end, 7 at a time, to the beginning.
		var bodies []string
		sawCreate := false
		from := ""
		for page := 0; page < 20; page++ {
			resp, err := bob.Messages(ctx, room.RoomID, from, "", mautrix.DirectionBackward, nil, 7)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range resp.Chunk {
				if ev.Type == event.EventMessage {
					bodies = append(bodies, ev.Content.Raw["body"].(string))
				}
				sawCreate = sawCreate || ev.Type == event.StateCreate
			}
			if resp.End == "" {
				break
			}
			from = resp.End
		}
		if len(bodies) != n {
			t.Fatalf("paged %d messages of history, want %d: %v", len(bodies), n, bodies)
		}
		for i, body := range bodies {
			if want := fmt.Sprintf("history %d", n-1-i); body != want {
				t.Fatalf("message %d is %q, want %q (newest first)", i, body, want)
			}
		}
		if !sawCreate {
			t.Fatal("paging did not reach the room's creation")
		}
		// Bob's /sync does not send the backfilled history as new.
		bobSync.until(func(r *mautrix.RespSync) bool { return true })
		probe, err := alice.SendText(ctx, room.RoomID, "new")
		if err != nil {
			t.Fatal(err)
		}
		bobSync.until(func(r *mautrix.RespSync) bool {
			jr := r.Rooms.Join[room.RoomID]
			if jr == nil {
				return false
			}
			for _, ev := range jr.Timeline.Events {
				if body, _ := ev.Content.Raw["body"].(string); len(body) > 8 && body[:8] == "history " {
					t.Fatalf("/sync sent backfilled %q as new", body)
				}
				if ev.ID == probe.EventID {
					return true
				}
			}
			return false
		})
	})
}
