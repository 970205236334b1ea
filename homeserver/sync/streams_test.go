package sync

import (
	"slices"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

const (
	alice = "@alice:test"
	bob   = "@bob:test"
	room  = "!room:test"
)

// TestRoomsStreamBounds: a joined room's timeline holds the events after
// the since position up to the committed one, never one past either
// bound; an initial sync starts at the room's beginning.
func TestRoomsStreamBounds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		empty := ""
		create, _ := f.event(room, "m.room.create", alice, &empty, map[string]any{"creator": alice})
		join, _ := f.join(room, alice)
		m1, p1 := f.message(room, alice)
		m2, p2 := f.message(room, alice)
		m3, p3 := f.message(room, alice)

		resp, _ := f.build(alice, nil, p2)
		jr := resp.Rooms.Join[room]
		if jr == nil || !slices.Equal(ids(jr.Timeline.Events), []string{create, join, m1, m2}) {
			t.Fatalf("initial sync up to %d: %+v", p2, jr)
		}
		if tok := f.token(resp); tok.Get(StreamRooms) != p2 {
			t.Fatalf("next_batch %s, want rooms at %d", resp.NextBatch, p2)
		}

		resp, empty2 := f.build(alice, at(Token{}, p1), p2)
		if jr := resp.Rooms.Join[room]; empty2 || jr == nil || !slices.Equal(ids(jr.Timeline.Events), []string{m2}) {
			t.Fatalf("since %d up to %d: empty %v, %+v", p1, p2, empty2, jr)
		}
		resp, _ = f.build(alice, at(Token{}, p2), p3)
		if jr := resp.Rooms.Join[room]; jr == nil || !slices.Equal(ids(jr.Timeline.Events), []string{m3}) || jr.Timeline.PrevBatch != prevBatch(p3) {
			t.Fatalf("since %d up to %d: %+v", p2, p3, jr)
		}
		// Nothing after the since position: no room, an empty response.
		resp, isEmpty := f.build(alice, at(Token{}, p3), p3)
		if !isEmpty || len(resp.Rooms.Join) != 0 {
			t.Fatalf("quiet incremental sync: empty %v, rooms %v", isEmpty, resp.Rooms.Join)
		}
		// A token from the future reads as now.
		if _, isEmpty := f.build(alice, at(Token{}, p3+100), p3); !isEmpty {
			t.Fatal("a token past the committed position brought something")
		}
		// Bob is invited, then joins: the invite and the join each show
		// once, in the window that holds them.
		_, pi := f.event(room, "m.room.member", alice, ptr(bob), map[string]any{"membership": "invite"})
		resp, _ = f.build(bob, at(Token{}, p3), pi)
		if resp.Rooms.Invite[room] == nil {
			t.Fatalf("invite up to %d not in bob's sync: %+v", pi, resp.Rooms)
		}
		_, pj := f.join(room, bob)
		resp, _ = f.build(bob, at(Token{}, pi), pj)
		if resp.Rooms.Invite[room] != nil || resp.Rooms.Join[room] == nil {
			t.Fatalf("after the join: invite %v join %v", resp.Rooms.Invite[room], resp.Rooms.Join[room])
		}
		if n := resp.Rooms.Join[room].Summary["m.joined_member_count"]; n != 2 {
			t.Fatalf("joined member count %v, want 2", n)
		}
	})
}

func ptr(s string) *string { return &s }

// TestReceiptsStreamBounds: receipts after the since position up to the
// committed one, in the room's ephemeral section.
func TestReceiptsStreamBounds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		f.join(room, alice)
		f.join(room, bob)
		m1, _ := f.message(room, alice)
		r1, err := f.db.PutReceipt(f.ctx, storage.Receipt{RoomID: room, UserID: alice, Type: "m.read", EventID: m1, TS: 1})
		if err != nil {
			t.Fatal(err)
		}
		r2, err := f.db.PutReceipt(f.ctx, storage.Receipt{RoomID: room, UserID: bob, Type: "m.read", EventID: m1, TS: 2})
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := f.build(alice, at(Token{}, r1), r2)
		readers := receiptReaders(resp, m1)
		if !slices.Equal(readers, []string{bob}) {
			t.Fatalf("receipts after %d up to %d: readers %v, want bob only", r1, r2, readers)
		}
		resp, _ = f.build(alice, at(Token{}, r1-1), r1)
		if readers := receiptReaders(resp, m1); !slices.Equal(readers, []string{alice}) {
			t.Fatalf("receipts up to %d: readers %v, want alice only", r1, readers)
		}
	})
}

func receiptReaders(resp *Response, eventID string) []string {
	var out []string
	jr := resp.Rooms.Join[room]
	if jr == nil {
		return nil
	}
	for _, e := range jr.Ephemeral.Events {
		m := e.(map[string]any)
		if m["type"] != "m.receipt" {
			continue
		}
		byType := m["content"].(map[string]any)[eventID].(map[string]any)
		for u := range byType["m.read"].(map[string]any) {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

// TestAccountDataStreamBounds: account data written after the since
// position up to the committed one; push rules in an initial sync only.
func TestAccountDataStreamBounds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		a1, err := f.db.PutAccountData(f.ctx, alice, "", "org.example.one", []byte(`{"n":1}`))
		if err != nil {
			t.Fatal(err)
		}
		a2, err := f.db.PutAccountData(f.ctx, alice, "", "org.example.two", []byte(`{"n":2}`))
		if err != nil {
			t.Fatal(err)
		}
		types := func(resp *Response) []string {
			var out []string
			for _, e := range resp.AccountData.Events {
				out = append(out, e.(map[string]any)["type"].(string))
			}
			slices.Sort(out)
			return out
		}
		if got := types(first(f.build(alice, nil, a1))); !slices.Equal(got, []string{"m.push_rules", "org.example.one"}) {
			t.Fatalf("initial up to %d: %v", a1, got)
		}
		if got := types(first(f.build(alice, at(Token{}, a1), a2))); !slices.Equal(got, []string{"org.example.two"}) {
			t.Fatalf("after %d up to %d: %v", a1, a2, got)
		}
		if resp, empty := f.build(alice, at(Token{}, a2), a2); !empty || len(resp.AccountData.Events) != 0 {
			t.Fatalf("nothing new: empty %v, %v", empty, types(resp))
		}
	})
}

func first(r *Response, _ bool) *Response { return r }

// TestToDeviceStreamAcknowledges: a response carries the messages after
// the token's to-device position up to the committed one; the next
// request's token acknowledges them, and they are deleted.
func TestToDeviceStreamAcknowledges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		put := func(n int) int64 {
			pos, err := f.db.PutToDevice(f.ctx, []storage.ToDevice{{UserID: alice, DeviceID: "DEV", Sender: bob, Type: "m.test",
				Content: []byte(`{"n":` + string(rune('0'+n)) + `}`)}})
			if err != nil {
				t.Fatal(err)
			}
			return pos
		}
		t1, t2 := put(1), put(2)
		t3 := put(3)
		resp, _ := f.build(alice, nil, t2)
		if len(resp.ToDevice.Events) != 2 {
			t.Fatalf("initial up to %d: %d messages, want 2", t2, len(resp.ToDevice.Events))
		}
		tok := f.token(resp)
		if tok.Get(StreamToDevice) != t2 {
			t.Fatalf("to-device position %d, want %d", tok.Get(StreamToDevice), t2)
		}
		resp, _ = f.build(alice, tok, t3)
		if len(resp.ToDevice.Events) != 1 {
			t.Fatalf("after %d up to %d: %d messages, want 1", t2, t3, len(resp.ToDevice.Events))
		}
		left, err := f.db.ToDeviceUpTo(f.ctx, alice, "DEV", t3, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 1 || left[0].Pos != t3 {
			t.Fatalf("after the acknowledgement of %d the store holds %+v, want only %d", t2, left, t3)
		}
		_ = t1
		// The batch limit: with more waiting than fit, the position is the
		// last message sent, not the committed one.
		var last int64
		for i := 0; i < MaxToDevicePerSync+5; i++ {
			last = put(i % 10)
		}
		resp, _ = f.build(alice, f.token(resp), last)
		if n := len(resp.ToDevice.Events); n != MaxToDevicePerSync {
			t.Fatalf("%d messages in one response, want %d", n, MaxToDevicePerSync)
		}
		if p := f.token(resp).Get(StreamToDevice); p >= last {
			t.Fatalf("to-device position %d reached %d though messages are left", p, last)
		}
	})
}

// TestTypingStreamBounds: typing shows for changes after the token's
// typing serial, and expires on the clock.
func TestTypingStreamBounds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		_, pos := f.join(room, alice)
		resp, _ := f.build(alice, nil, pos)
		tok := f.token(resp)
		f.eph.SetTyping(room, bob, true, 30*time.Second)
		resp, _ = f.build(alice, tok, pos)
		if got := typers(resp); !slices.Equal(got, []string{bob}) {
			t.Fatalf("typing after serial %d: %v", tok.Get(StreamTyping), got)
		}
		tok = f.token(resp)
		if _, empty := f.build(alice, tok, pos); !empty {
			t.Fatal("typing unchanged since the token, yet the response is not empty")
		}
		f.clock.Advance(31 * time.Second)
		resp, _ = f.build(alice, tok, pos)
		if got := typers(resp); got == nil || len(got) != 0 {
			t.Fatalf("after the timeout: typing %v, want an empty list", got)
		}
	})
}

func typers(resp *Response) []string {
	jr := resp.Rooms.Join[room]
	if jr == nil {
		return nil
	}
	for _, e := range jr.Ephemeral.Events {
		m := e.(map[string]any)
		if m["type"] == "m.typing" {
			return m["content"].(map[string]any)["user_ids"].([]string)
		}
	}
	return nil
}

// TestPresenceStreamBounds: presence of users sharing a room, changed
// after the token's presence serial.
func TestPresenceStreamBounds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		f.join(room, alice)
		_, pos := f.join(room, bob)
		const carol = "@carol:test" // shares no room
		f.eph.SetPresence(bob, PresenceUpdate{Presence: PresenceOnline, LastActive: f.clock.Now()})
		f.eph.SetPresence(carol, PresenceUpdate{Presence: PresenceOnline, LastActive: f.clock.Now()})
		resp, _ := f.build(alice, nil, pos)
		if got := senders(resp.Presence.Events); !slices.Equal(got, []string{bob}) {
			t.Fatalf("initial presence: %v, want bob only", got)
		}
		tok := f.token(resp)
		if _, empty := f.build(alice, tok, pos); !empty {
			t.Fatal("presence unchanged since the token, yet the response is not empty")
		}
		f.eph.SetPresence(bob, PresenceUpdate{Presence: PresenceUnavailable})
		resp, _ = f.build(alice, tok, pos)
		if got := senders(resp.Presence.Events); !slices.Equal(got, []string{bob}) {
			t.Fatalf("presence after serial %d: %v", tok.Get(StreamPresence), got)
		}
	})
}

func senders(evs []any) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.(map[string]any)["sender"].(string))
	}
	return out
}

// TestDeviceListStreamBounds: device_lists.changed holds users sharing a
// room whose devices changed after the since position, up to the
// committed one; every response carries the key counts.
func TestDeviceListStreamBounds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		f.join(room, alice)
		_, joined := f.join(room, bob)
		if err := f.db.RecordDeviceListChange(f.ctx, bob); err != nil {
			t.Fatal(err)
		}
		changed := f.notes.Position()
		resp, _ := f.build(alice, at(Token{}, joined), changed)
		if resp.DeviceLists == nil || !slices.Equal(resp.DeviceLists.Changed, []string{bob}) {
			t.Fatalf("after %d up to %d: %+v", joined, changed, resp.DeviceLists)
		}
		if resp.OTKCounts == nil || resp.Fallback == nil {
			t.Fatal("key counts missing")
		}
		if resp, _ := f.build(alice, at(Token{}, changed), changed); resp.DeviceLists != nil {
			t.Fatalf("nothing after %d, yet %+v", changed, resp.DeviceLists)
		}
		// Bob's join itself: alice learns of him in the window holding it.
		resp, _ = f.build(alice, at(Token{}, joined-1), joined)
		if resp.DeviceLists == nil || !slices.Contains(resp.DeviceLists.Changed, bob) {
			t.Fatalf("bob's join in (%d, %d]: %+v", joined-1, joined, resp.DeviceLists)
		}
	})
}

// TestUnreadStreamBounds: a notification written after the since
// position brings its room with the counts; one at or before it does not.
func TestUnreadStreamBounds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		f.join(room, alice)
		m, pos := f.message(room, bob)
		if err := f.db.AddNotifications(f.ctx, []storage.Notification{{UserID: alice, Pos: pos, RoomID: room, EventID: m,
			TS: 1, Actions: []byte(`["notify"]`)}}, pos); err != nil {
			t.Fatal(err)
		}
		notified := f.notes.Position()
		resp, _ := f.build(alice, at(Token{}, pos), notified)
		jr := resp.Rooms.Join[room]
		if jr == nil || jr.UnreadNotifications["notification_count"] != 1 {
			t.Fatalf("after %d up to %d: %+v", pos, notified, jr)
		}
		if resp, empty := f.build(alice, at(Token{}, notified), notified); !empty || resp.Rooms.Join[room] != nil {
			t.Fatalf("nothing new after %d, yet room %+v", notified, resp.Rooms.Join[room])
		}
	})
}
