package homeserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// fedSyncer follows one client's /sync and collects timeline events.
type fedSyncer struct {
	t     *testing.T
	cli   *mautrix.Client
	since string
	// seen holds timeline events that waitTimeline synced but no wait
	// took yet: two waits in a row must not lose what one response
	// brought for both.
	seen map[id.RoomID][]*event.Event
}

func newFedSyncer(t *testing.T, cli *mautrix.Client) *fedSyncer {
	t.Helper()
	resp, err := cli.SyncRequest(context.Background(), 0, "", "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	return &fedSyncer{t: t, cli: cli, since: resp.NextBatch}
}

// syncFilter asks for long timelines, so that a burst of federated
// events is not cut to the default 10 (limited).
const fedSyncFilter = `{"room":{"timeline":{"limit":200}}}`

// fedWait bounds a wait for something to cross from one server to the
// other. It is a guard against a hang, not a timing: on CI's two loaded
// cores a burst of federated events has taken tens of seconds.
const fedWait = 90 * time.Second

// until syncs until pred says done, handing it every response.
func (s *fedSyncer) until(pred func(*mautrix.RespSync) bool) {
	s.t.Helper()
	start := time.Now()
	deadline := start.Add(fedWait)
	syncs := 0
	for time.Now().Before(deadline) {
		syncs++
		resp, err := s.cli.FullSyncRequest(context.Background(), mautrix.ReqSync{Timeout: 5000, Since: s.since, FilterID: fedSyncFilter})
		if err != nil {
			s.t.Fatalf("sync: %v", err)
		}
		s.since = resp.NextBatch
		for _, jr := range resp.Rooms.Join {
			if jr != nil && jr.Timeline.Limited {
				s.t.Errorf("%s: a limited timeline: events were skipped", s.cli.UserID)
			}
		}
		if pred(resp) {
			return
		}
	}
	s.t.Fatalf("%s: sync did not deliver what was expected in %s (%d syncs, since %q)", s.cli.UserID, time.Since(start).Round(time.Millisecond), syncs, s.since)
}

// waitTimeline syncs until n timeline events of type evType from sender
// arrived in room and returns them in order (the first n of them; later
// ones stay for the next wait).
func (s *fedSyncer) waitTimeline(room id.RoomID, sender id.UserID, evType string, n int) []*event.Event {
	s.t.Helper()
	var got []*event.Event
	take := func() bool {
		rest := s.seen[room][:0]
		for _, ev := range s.seen[room] {
			if len(got) < n && ev.Sender == sender && ev.Type.Type == evType {
				got = append(got, ev)
			} else {
				rest = append(rest, ev)
			}
		}
		s.seen[room] = rest
		return len(got) >= n
	}
	if s.seen == nil {
		s.seen = map[id.RoomID][]*event.Event{}
	}
	if take() {
		return got
	}
	s.until(func(r *mautrix.RespSync) bool {
		if jr, ok := r.Rooms.Join[room]; ok {
			s.seen[room] = append(s.seen[room], jr.Timeline.Events...)
		}
		return take()
	})
	return got
}

// joinAcross has alice on a create a room and invite bob on b, and bob
// join it: the invite and join cross the federation.
func joinAcross(t *testing.T, ctx context.Context, alice, bob *mautrix.Client, bobSync *fedSyncer) id.RoomID {
	t.Helper()
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Across", Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
		t.Fatalf("remote invite: %v", err)
	}
	// The invite shows the room's name, which only the inviting server's
	// invite_room_state carries to b.
	bobSync.until(func(r *mautrix.RespSync) bool {
		ir, ok := r.Rooms.Invite[room.RoomID]
		if !ok {
			return false
		}
		for _, ev := range ir.State.Events {
			if ev.Type == event.StateRoomName && ev.Content.Raw["name"] == "Across" {
				return true
			}
		}
		t.Fatalf("invite to %s without the room name: %d stripped events", room.RoomID, len(ir.State.Events))
		return false
	})
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatalf("remote join: %v", err)
	}
	return room.RoomID
}

func TestFederationInviteJoinMessagesAndCall(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb := startFedNode(t, b), startFedNode(t, b)
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		aliceSync, bobSync := newFedSyncer(t, alice), newFedSyncer(t, bob)
		room := joinAcross(t, ctx, alice, bob, bobSync)

		// Alice's server stored Bob's join (send_join).
		aliceSync.until(func(r *mautrix.RespSync) bool {
			jr, ok := r.Rooms.Join[room]
			if !ok {
				return false
			}
			for _, ev := range jr.Timeline.Events {
				if ev.Type == event.StateMember && ev.GetStateKey() == string(bob.UserID) && ev.Content.Raw["membership"] == "join" {
					return true
				}
			}
			return false
		})
		members, err := bob.JoinedMembers(ctx, room)
		if err != nil || len(members.Joined) != 2 {
			t.Fatalf("bob's server sees members %v (%v)", members, err)
		}
		// Bob's own /sync carries the state the join brought, not the
		// empty state before the invite stub: alice is in the room.
		initial, err := bob.SyncRequest(ctx, 0, "", "", false, event.PresenceOnline)
		if err != nil {
			t.Fatal(err)
		}
		aliceJoined := false
		if jr, ok := initial.Rooms.Join[room]; ok {
			for _, ev := range append(jr.State.Events, jr.Timeline.Events...) {
				if ev.Type == event.StateMember && ev.GetStateKey() == string(alice.UserID) && ev.Content.Raw["membership"] == "join" {
					aliceJoined = true
				}
			}
		}
		if !aliceJoined {
			t.Fatalf("bob's initial /sync does not show alice joined to %s", room)
		}

		// Messages both ways.
		if _, err := alice.SendText(ctx, room, "hello from A"); err != nil {
			t.Fatal(err)
		}
		got := bobSync.waitTimeline(room, alice.UserID, "m.room.message", 1)
		if got[0].Content.Raw["body"] != "hello from A" || got[0].Unsigned.Age < 0 {
			t.Fatalf("bob got %+v", got[0])
		}
		requireAge(t, bb, bob, room, got[0].ID)
		if _, err := bob.SendText(ctx, room, "hello from B"); err != nil {
			t.Fatal(err)
		}
		if got := aliceSync.waitTimeline(room, bob.UserID, "m.room.message", 1); got[0].Content.Raw["body"] != "hello from B" {
			t.Fatalf("alice got %+v", got[0])
		}

		// The whole 1:1 call sequence (spec: Client-Server API, "Voice over IP").
		callID := "c1"
		send := func(cli *mautrix.Client, typ string, content map[string]any) {
			t.Helper()
			content["call_id"], content["version"], content["party_id"] = callID, "1", string(cli.DeviceID)
			if _, err := cli.SendMessageEvent(ctx, room, event.NewEventType(typ), content); err != nil {
				t.Fatalf("%s: %v", typ, err)
			}
		}
		send(alice, "m.call.invite", map[string]any{"lifetime": 60000, "offer": map[string]any{"type": "offer", "sdp": "v=0\r\n"}})
		send(alice, "m.call.candidates", map[string]any{"candidates": []any{map[string]any{"candidate": "candidate:1 1 udp 1 127.0.0.1 1 typ host", "sdpMid": "0", "sdpMLineIndex": 0}}})
		for _, want := range []string{"m.call.invite", "m.call.candidates"} {
			ev := bobSync.waitTimeline(room, alice.UserID, want, 1)[0]
			if ev.Content.Raw["call_id"] != callID {
				t.Fatalf("%s lost its content: %v", want, ev.Content.Raw)
			}
			if ev.Unsigned.Age < 0 {
				t.Fatalf("%s: negative unsigned.age %d", want, ev.Unsigned.Age)
			}
		}
		send(bob, "m.call.answer", map[string]any{"answer": map[string]any{"type": "answer", "sdp": "v=0\r\n"}})
		send(bob, "m.call.candidates", map[string]any{"candidates": []any{}})
		aliceSync.waitTimeline(room, bob.UserID, "m.call.answer", 1)
		send(alice, "m.call.select_answer", map[string]any{"selected_party_id": string(bob.DeviceID)})
		bobSync.waitTimeline(room, alice.UserID, "m.call.select_answer", 1)
		send(alice, "m.call.hangup", map[string]any{"reason": "user_hangup"})
		bobSync.waitTimeline(room, alice.UserID, "m.call.hangup", 1)
	})
}

// TestFederationOutage stops B, has a user on A send 100 events into the
// shared room, starts B again: all 100 reach B's user, in order, without
// any client action.
func TestFederationOutage(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb := startFedNode(t, b), startFedNode(t, b)
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		bobSync := newFedSyncer(t, bob)
		room := joinAcross(t, ctx, alice, bob, bobSync)
		bobSync.until(func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Join[room]; return ok })

		bb.stop()
		for i := 0; i < 100; i++ {
			if _, err := alice.SendText(ctx, room, fmt.Sprintf("m%03d", i)); err != nil {
				t.Fatal(err)
			}
		}
		bb.restart()
		var bodies []string
		// On failure, say where the events stopped: still queued on a,
		// stored on b but not synced, or neither.
		t.Cleanup(func() {
			if !t.Failed() || bb.srv == nil {
				return
			}
			queued, err := a.srv.db.QueueBatch(context.Background(), bb.name, 200, 200)
			t.Logf("a's queue to b: %d items (err %v)", len(queued), err)
			msgs, err := bob.Messages(context.Background(), room, "", "", mautrix.DirectionBackward, nil, 200)
			if err != nil {
				t.Logf("b's /messages: %v", err)
				return
			}
			stored := 0
			for _, ev := range msgs.Chunk {
				if ev.Sender == alice.UserID && ev.Type == event.EventMessage {
					stored++
				}
			}
			t.Logf("b stores %d of alice's messages; sync delivered %d", stored, len(bodies))
		})
		bobSync.until(func(r *mautrix.RespSync) bool {
			if jr, ok := r.Rooms.Join[room]; ok {
				for _, ev := range jr.Timeline.Events {
					if ev.Sender == alice.UserID && ev.Type == event.EventMessage {
						body, _ := ev.Content.Raw["body"].(string)
						bodies = append(bodies, body)
					}
				}
				t.Logf("bob has %d of 100 messages", len(bodies))
			}
			return len(bodies) >= 100
		})
		for i, body := range bodies {
			if want := fmt.Sprintf("m%03d", i); body != want {
				t.Fatalf("event %d is %q, want %q (of %d)", i, body, want, len(bodies))
			}
		}
	})
}

// requireAge reads eventID through a raw /messages call on node n and
// checks that unsigned.age is present and not negative.
func requireAge(t *testing.T, n *fedNode, cli *mautrix.Client, room id.RoomID, eventID id.EventID) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.URL+"/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+"/messages?dir=b&limit=50", nil)
	req.Header.Set("Authorization", "Bearer "+cli.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Chunk []struct {
			EventID  string         `json:"event_id"`
			Unsigned map[string]any `json:"unsigned"`
		} `json:"chunk"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Chunk {
		if e.EventID == string(eventID) {
			age, ok := e.Unsigned["age"].(float64)
			if !ok || age < 0 {
				t.Fatalf("event %s: unsigned %v has no valid age", eventID, e.Unsigned)
			}
			return
		}
	}
	t.Fatalf("event %s not in /messages", eventID)
}

// TestFederationRejectInvite has a user on B decline an invite from A:
// the leave goes through make_leave/send_leave and A's room shows it.
func TestFederationRejectInvite(t *testing.T) {
	b := storagetest.Backends(t)[0]
	a, bb := startFedNode(t, b), startFedNode(t, b)
	ctx := testCtx(t)
	alice, bob := a.user(t, "alice"), bb.user(t, "bob")
	bobSync := newFedSyncer(t, bob)
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}, IsDirect: true})
	if err != nil {
		t.Fatal(err)
	}
	bobSync.until(func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Invite[room.RoomID]; return ok })
	if _, err := bob.LeaveRoom(ctx, room.RoomID); err != nil {
		t.Fatalf("reject: %v", err)
	}
	m, err := a.srv.Membership(ctx, string(room.RoomID), string(bob.UserID))
	if err != nil || m != "leave" {
		t.Fatalf("A sees bob's membership %q (%v)", m, err)
	}
	bobSync.until(func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Leave[room.RoomID]; return ok })
}
