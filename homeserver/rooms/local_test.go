package rooms_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

const roomID = "!room:a.test"

func TestAppendLocalChainsStateAndFrontier(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		w.createRoom(roomID)
		room := w.room(roomID)
		if room.Depth != 4 || len(room.Extremities) != 1 {
			t.Fatalf("after four events: depth %d, extremities %v", room.Depth, room.Extremities)
		}
		if st := w.stateMap(roomID); len(st) != 4 {
			t.Fatalf("state has %d entries, want 4: %v", len(st), st)
		}
		w.mu.Lock()
		for _, a := range w.appended {
			if !a.Local || !a.Current {
				t.Errorf("hook saw %+v, want a local event in the current state", a)
			}
		}
		w.mu.Unlock()

		// A state event that replaces another names it in unsigned.
		rule, err := w.send(roomID, withSender(state(spec.MRoomJoinRules, "", map[string]any{"join_rule": "invite"}), alice))
		if err != nil {
			t.Fatal(err)
		}
		stored, err := w.db.Event(ctx, rule.EventID)
		if err != nil {
			t.Fatal(err)
		}
		var extra struct {
			PrevContent   map[string]any `json:"prev_content"`
			ReplacesState string         `json:"replaces_state"`
		}
		if err := json.Unmarshal(stored.UnsignedExtra, &extra); err != nil || extra.PrevContent["join_rule"] != "public" || extra.ReplacesState == "" {
			t.Fatalf("unsigned of the replacing event: %s (%v)", stored.UnsignedExtra, err)
		}
		// A message moves the frontier, not the state.
		snap := w.room(roomID).CurrentSnapshot
		m, err := w.send(roomID, msg(alice, "hello"))
		if err != nil {
			t.Fatal(err)
		}
		room = w.room(roomID)
		if !slices.Equal(room.Extremities, []string{m.EventID}) || room.CurrentSnapshot != snap || room.Depth != 6 {
			t.Fatalf("after a message: %+v", room)
		}
		if m.SnapBefore != snap {
			t.Fatalf("message's snapshot before %d, want %d", m.SnapBefore, snap)
		}
	})
}

func withSender(ev rooms.Event, sender string) rooms.Event {
	ev.Sender = sender
	return ev
}

func TestAppendLocalRefusals(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		w.createRoom(roomID)
		if _, err := w.send(roomID, withSender(state(spec.MRoomMember, carol, map[string]any{"membership": "join"}), carol)); err != nil {
			t.Fatal(err)
		}
		target, err := w.send(roomID, msg(alice, "alice's"))
		if err != nil {
			t.Fatal(err)
		}
		redaction := func(sender string, content any) rooms.Event {
			b, _ := json.Marshal(content)
			return rooms.Event{Sender: sender, Type: spec.MRoomRedaction, Content: b}
		}
		cases := []struct {
			name   string
			room   string
			ev     rooms.Event
			want   error
			detail string
		}{
			{"not a member", roomID, msg("@dave:a.test", "hi"), rooms.ErrForbidden, "not"},
			{"too large", roomID, msg(alice, strings.Repeat("x", 70000)), rooms.ErrTooLarge, ""},
			{"redaction without a target", roomID, redaction(alice, map[string]any{}), rooms.ErrMissingParam, "redacts"},
			{"redaction of an unknown event", roomID, redaction(alice, map[string]any{"redacts": "$nope"}), rooms.ErrNotFound, "$nope"},
			{"redaction of another's event without power", roomID, redaction(carol, map[string]any{"redacts": target.EventID}), rooms.ErrForbidden, "your own"},
			{"unknown room", "!nope:a.test", msg(alice, "hi"), rooms.ErrNotFound, "!nope:a.test"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				before := w.room(roomID)
				_, err := w.send(tc.room, tc.ev)
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				var re *rooms.Error
				if !errors.As(err, &re) || !strings.Contains(re.Detail(), tc.detail) {
					t.Fatalf("detail of %v does not mention %q", err, tc.detail)
				}
				after := w.room(roomID)
				if !slices.Equal(before.Extremities, after.Extremities) || before.CurrentSnapshot != after.CurrentSnapshot {
					t.Fatal("a refused event changed the room")
				}
			})
		}
	})
}

func TestAppendLocalRedaction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		w.createRoom(roomID)
		if _, err := w.send(roomID, withSender(state(spec.MRoomMember, carol, map[string]any{"membership": "join"}), carol)); err != nil {
			t.Fatal(err)
		}
		own, _ := w.send(roomID, msg(carol, "carol's"))
		other, _ := w.send(roomID, msg(carol, "carol's too"))
		for _, tc := range []struct{ sender, target string }{{carol, own.EventID}, {alice, other.EventID}} {
			b, _ := json.Marshal(map[string]any{"redacts": tc.target, "reason": "test"})
			r, err := w.send(roomID, rooms.Event{Sender: tc.sender, Type: spec.MRoomRedaction, Content: b})
			if err != nil {
				t.Fatalf("%s redacting %s: %v", tc.sender, tc.target, err)
			}
			got, err := w.db.Event(ctx, tc.target)
			if err != nil {
				t.Fatal(err)
			}
			if got.RedactedBy != r.EventID || strings.Contains(string(got.JSON), "carol's") {
				t.Fatalf("target after redaction: redacted by %q, %s", got.RedactedBy, got.JSON)
			}
		}
	})
}

func TestTemplateAndBuildStoreNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		w.createRoom(roomID)
		before := w.room(roomID)
		err := w.db.WriteTx(ctx, func(tx *storage.Tx) error {
			wr, err := w.r.Open(ctx, tx, roomID)
			if err != nil {
				return err
			}
			ev := withSender(state(spec.MRoomMember, bob, map[string]any{"membership": "join"}), bob)
			proto, err := wr.Template(ctx, ev)
			if err != nil {
				return err
			}
			if !slices.Equal(proto.PrevEvents.([]string), before.Extremities) || proto.Depth != before.Depth+1 {
				t.Errorf("template on %v at depth %d, want the frontier %v", proto.PrevEvents, proto.Depth, before.Extremities)
			}
			if _, err := wr.Build(ctx, ev); err != nil {
				return err
			}
			_, err = wr.Build(ctx, withSender(state(spec.MRoomName, "", map[string]any{"name": "x"}), bob))
			if !errors.Is(err, rooms.ErrForbidden) {
				t.Errorf("a non-member's name change built: %v", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if after := w.room(roomID); after.Depth != before.Depth || !slices.Equal(after.Extremities, before.Extremities) {
			t.Fatal("Template or Build stored something")
		}
	})
}
