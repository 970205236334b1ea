package homeserver

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// syncUntil long-polls /sync from since until pred finds what it wants in
// a response, or the deadline passes; it returns the last next_batch.
func syncUntil(t *testing.T, cli *mautrix.Client, since string, pred func(*mautrix.RespSync) bool) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := cli.SyncRequest(context.Background(), 5000, since, "", false, "")
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		since = resp.NextBatch
		if pred(resp) {
			return since
		}
	}
	t.Fatalf("%s: sync did not deliver what was expected in time", cli.UserID)
	return ""
}

func TestRoomLifecycleAndSync(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")

		bobSync, err := bob.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Calls", Invite: []id.UserID{bob.UserID}, IsDirect: true})
		if err != nil {
			t.Fatal(err)
		}
		since := syncUntil(t, bob, bobSync.NextBatch, func(r *mautrix.RespSync) bool {
			_, ok := r.Rooms.Invite[room.RoomID]
			return ok
		})
		if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		// Bob's first sync after joining carries the room's full state.
		since = syncUntil(t, bob, since, func(r *mautrix.RespSync) bool {
			jr, ok := r.Rooms.Join[room.RoomID]
			if !ok {
				return false
			}
			for _, e := range append(jr.State.Events, jr.Timeline.Events...) {
				if e.Type == event.StateRoomName {
					return true
				}
			}
			t.Fatalf("joined room section has no m.room.name: %+v", jr)
			return false
		})

		// A message sent while Bob waits wakes his long-poll.
		got := make(chan *event.Event, 1)
		go func() {
			resp, err := bob.SyncRequest(context.Background(), 20000, since, "", false, "")
			if err != nil {
				got <- nil
				return
			}
			for _, e := range resp.Rooms.Join[room.RoomID].Timeline.Events {
				got <- e
				return
			}
			got <- nil
		}()
		sent, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "hello"},
			mautrix.ReqSendEvent{TransactionID: "txn-1"})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-got:
			if e == nil || e.ID != sent.EventID || e.Content.Raw["body"] != "hello" {
				t.Fatalf("bob got %+v, want %s", e, sent.EventID)
			}
			if e.Unsigned.Age < 0 {
				t.Fatalf("unsigned.age = %d", e.Unsigned.Age)
			}
			if e.Unsigned.TransactionID != "" {
				t.Fatalf("bob sees alice's transaction_id %q", e.Unsigned.TransactionID)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("long-poll did not return")
		}
		// Same transaction ID: same event, nothing new stored.
		again, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "hello"},
			mautrix.ReqSendEvent{TransactionID: "txn-1"})
		if err != nil || again.EventID != sent.EventID {
			t.Fatalf("retry = %v, %v; want %s", again, err, sent.EventID)
		}
		// Alice's own sync shows her transaction_id.
		syncUntil(t, alice, "", func(r *mautrix.RespSync) bool {
			for _, e := range r.Rooms.Join[room.RoomID].Timeline.Events {
				if e.ID == sent.EventID {
					if e.Unsigned.TransactionID != "txn-1" {
						t.Fatalf("alice's transaction_id = %q", e.Unsigned.TransactionID)
					}
					return true
				}
			}
			return false
		})

		// History through /messages.
		msgs, err := bob.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 50)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs.Chunk) == 0 || msgs.Chunk[0].ID != sent.EventID {
			t.Fatalf("messages newest = %+v", msgs.Chunk)
		}

		// Bob leaves; his sends are then refused.
		if _, err := bob.LeaveRoom(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		_, err = bob.SendMessageEvent(ctx, room.RoomID, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "x"})
		assertErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")
	})
}

func TestCallEventSequence(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", Invite: []id.UserID{bob.UserID}, IsDirect: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		start, err := bob.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		seq := []struct {
			from *mautrix.Client
			typ  string
			body map[string]any
		}{
			{alice, "m.call.invite", map[string]any{"call_id": "c1", "party_id": "pa", "version": "1", "lifetime": 60000,
				"offer": map[string]any{"type": "offer", "sdp": "v=0\r\n"}}},
			{alice, "m.call.candidates", map[string]any{"call_id": "c1", "party_id": "pa", "version": "1",
				"candidates": []any{map[string]any{"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}}}},
			{bob, "m.call.answer", map[string]any{"call_id": "c1", "party_id": "pb", "version": "1", "answer": map[string]any{"type": "answer", "sdp": "v=0\r\n"}}},
			{alice, "m.call.select_answer", map[string]any{"call_id": "c1", "party_id": "pa", "version": "1", "selected_party_id": "pb"}},
			{alice, "m.call.hangup", map[string]any{"call_id": "c1", "party_id": "pa", "version": "1", "reason": "user_hangup"}},
		}
		want := map[string]bool{}
		for _, s := range seq {
			if _, err := s.from.SendMessageEvent(ctx, room.RoomID, event.Type{Type: s.typ, Class: event.MessageEventType}, s.body); err != nil {
				t.Fatalf("%s: %v", s.typ, err)
			}
			if s.from == alice {
				want[s.typ] = true
			}
		}
		seen := map[string]bool{}
		syncUntil(t, bob, start.NextBatch, func(r *mautrix.RespSync) bool {
			for _, e := range r.Rooms.Join[room.RoomID].Timeline.Events {
				raw, _ := json.Marshal(e.Content.Raw)
				if e.Content.Raw["call_id"] != "c1" {
					t.Fatalf("%s lost its content: %s", e.Type.Type, raw)
				}
				seen[e.Type.Type] = true
			}
			for typ := range want {
				if !seen[typ] {
					return false
				}
			}
			return true
		})
	})
}

func TestProfileChangeReachesRooms(t *testing.T) {
	ts := newTestServer(t, storagetest.Backends(t)[0])
	ctx := testCtx(t)
	alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	start, err := bob.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.SetDisplayName(ctx, "Alice Liddell"); err != nil {
		t.Fatal(err)
	}
	syncUntil(t, bob, start.NextBatch, func(r *mautrix.RespSync) bool {
		for _, e := range r.Rooms.Join[room.RoomID].Timeline.Events {
			if e.Type == event.StateMember && e.GetStateKey() == string(alice.UserID) && e.Content.Raw["displayname"] == "Alice Liddell" {
				if e.Content.Raw["membership"] != "join" {
					t.Fatalf("membership changed: %v", e.Content.Raw)
				}
				return true
			}
		}
		return false
	})
}

func TestRedaction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		mine, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "secret"})
		if err != nil {
			t.Fatal(err)
		}
		// Bob (power 0) may not redact Alice's event.
		_, err = bob.RedactEvent(ctx, room.RoomID, mine.EventID)
		assertErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")
		if _, err := alice.RedactEvent(ctx, room.RoomID, mine.EventID, mautrix.ReqRedact{Reason: "oops"}); err != nil {
			t.Fatal(err)
		}
		ev, err := bob.GetEvent(ctx, room.RoomID, mine.EventID)
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.Content.Raw) != 0 || ev.Unsigned.RedactedBecause == nil {
			t.Fatalf("redacted event still has content %v (redacted_because %v)", ev.Content.Raw, ev.Unsigned.RedactedBecause)
		}
	})
}
