package rooms_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// joinBob delivers bob's join (built and signed by b.test).
func joinBob(t *testing.T, w *world) gomatrixserverlib.PDU {
	t.Helper()
	join := w.remote(roomID, withSender(state(spec.MRoomMember, bob, map[string]any{"membership": "join"}), bob), nil)
	if out, err := w.receive(join); err != nil || out != rooms.Stored {
		t.Fatalf("bob's join: %v %v", out, err)
	}
	return join
}

func TestAppendRemoteJoinAndMessage(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		w.createRoom(roomID)
		join := joinBob(t, w)
		if w.stateMap(roomID)[storage.StateKey{Type: spec.MRoomMember, StateKey: bob}] != join.EventID() {
			t.Fatal("bob's join is not in the current state")
		}
		w.mu.Lock()
		last := w.appended[len(w.appended)-1]
		w.mu.Unlock()
		if last.Local || !last.Current || last.Event.EventID != join.EventID() {
			t.Fatalf("hook saw %+v for the remote join", last)
		}
		// The same PDU again changes nothing.
		if out, err := w.receive(join); err != nil || out != rooms.Known {
			t.Fatalf("resend: %v %v", out, err)
		}
		m := w.remote(roomID, msg(bob, "from b"), nil)
		if out, err := w.receive(m); err != nil || out != rooms.Stored {
			t.Fatalf("bob's message: %v %v", out, err)
		}
		room := w.room(roomID)
		if !slices.Equal(room.Extremities, []string{m.EventID()}) || room.Depth != m.Depth() {
			t.Fatalf("frontier after bob's message: %v depth %d", room.Extremities, room.Depth)
		}
		if e, err := w.db.Event(ctx, m.EventID()); err != nil || e.Outlier {
			t.Fatalf("bob's message stored as %+v, %v", e, err)
		}
		// A local event after it builds on it.
		local, err := w.send(roomID, msg(alice, "reply"))
		if err != nil {
			t.Fatal(err)
		}
		p, err := rooms.ParseIn("11", local)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(p.PrevEventIDs(), []string{m.EventID()}) {
			t.Fatalf("reply's prev events %v", p.PrevEventIDs())
		}
	})
}

func TestAppendRemoteRefusals(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		w.createRoom(roomID)
		joinBob(t, w)
		cases := []struct {
			name   string
			pdu    gomatrixserverlib.PDU
			want   error
			detail string
		}{
			// Bob (power 0) renames the room: his own auth events refuse it.
			{"no power", w.remote(roomID, withSender(state(spec.MRoomName, "", map[string]any{"name": "mine"}), bob), nil), rooms.ErrRejected, "refuse"},
			{"unknown prev event", w.remote(roomID, msg(bob, "x"), func(p *gomatrixserverlib.ProtoEvent) {
				p.PrevEvents = []string{"$unknown"}
			}), rooms.ErrBadEvent, "prev"},
			{"unknown auth event", w.remote(roomID, msg(bob, "x"), func(p *gomatrixserverlib.ProtoEvent) {
				p.AuthEvents = append(p.AuthEvents.([]string), "$unknown")
			}), rooms.ErrBadEvent, "auth"},
			{"sender not in room", w.remote(roomID, msg("@eve:b.test", "x"), nil), rooms.ErrRejected, "refuse"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				before := w.room(roomID)
				_, err := w.receive(tc.pdu)
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.detail) {
					t.Fatalf("got %v, want %v mentioning %q", err, tc.want, tc.detail)
				}
				if _, err := w.db.Event(ctx, tc.pdu.EventID()); !errors.Is(err, storage.ErrNotFound) {
					t.Fatal("a refused event was stored")
				}
				if after := w.room(roomID); !slices.Equal(after.Extremities, before.Extremities) || after.CurrentSnapshot != before.CurrentSnapshot {
					t.Fatal("a refused event moved the room")
				}
			})
		}
	})
}

// TestAppendRemoteSoftFail: bob's message, sent before he learnt of his
// ban, passes against the state before it but not the current state.
func TestAppendRemoteSoftFail(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		w.createRoom(roomID)
		joinBob(t, w)
		late := w.remote(roomID, msg(bob, "still here"), nil)
		ban, err := w.send(roomID, withSender(state(spec.MRoomMember, bob, map[string]any{"membership": "ban"}), alice))
		if err != nil {
			t.Fatal(err)
		}
		out, err := w.receive(late)
		if err != nil || out != rooms.SoftFailed {
			t.Fatalf("late message: %v %v, want soft-failed", out, err)
		}
		v, err := w.db.EventVerdict(ctx, late.EventID())
		if err != nil || v.Verdict != storage.VerdictSoftFailed {
			t.Fatalf("verdict %+v %v", v, err)
		}
		if e, err := w.db.Event(ctx, late.EventID()); err != nil || !e.Outlier {
			t.Fatalf("soft-failed event stored as %+v, %v; want an outlier", e, err)
		}
		if room := w.room(roomID); !slices.Equal(room.Extremities, []string{ban.EventID}) {
			t.Fatalf("frontier %v, want only the ban", room.Extremities)
		}
	})
}

// TestAppendRemoteFork: an event on an older frontier forks the DAG; the
// next local event joins both ends.
func TestAppendRemoteFork(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		w.createRoom(roomID)
		joinBob(t, w)
		fork := w.remote(roomID, msg(bob, "on the old frontier"), nil)
		m, err := w.send(roomID, msg(alice, "meanwhile"))
		if err != nil {
			t.Fatal(err)
		}
		if out, err := w.receive(fork); err != nil || out != rooms.Stored {
			t.Fatalf("fork: %v %v", out, err)
		}
		room := w.room(roomID)
		want := []string{m.EventID, fork.EventID()}
		if !slices.Equal(room.Extremities, want) {
			t.Fatalf("extremities %v, want %v", room.Extremities, want)
		}
		next, err := w.send(roomID, msg(alice, "merge"))
		if err != nil {
			t.Fatal(err)
		}
		p, _ := rooms.ParseIn("11", next)
		if got := p.PrevEventIDs(); !slices.Equal(got, want) {
			t.Fatalf("merge's prev events %v, want %v", got, want)
		}
	})
}

// TestAppendRemoteRedactions: another server's redaction is applied to
// its own users' events, not to ours without power; one that arrives
// before its target is applied when the target arrives.
func TestAppendRemoteRedactions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		w.createRoom(roomID)
		joinBob(t, w)
		ours, err := w.send(roomID, msg(alice, "alice's words"))
		if err != nil {
			t.Fatal(err)
		}
		redact := func(target string) gomatrixserverlib.PDU {
			b, _ := json.Marshal(map[string]any{"redacts": target})
			return w.remote(roomID, rooms.Event{Sender: bob, Type: spec.MRoomRedaction, Content: b}, nil)
		}
		r1 := redact(ours.EventID)
		if out, err := w.receive(r1); err != nil || out != rooms.Stored {
			t.Fatalf("redaction of alice's event: %v %v", out, err)
		}
		if e, _ := w.db.Event(ctx, ours.EventID); e.RedactedBy != "" {
			t.Fatal("b.test redacted a.test's event without power")
		}
		// Bob's message, held back; his redaction of it arrives first.
		held := w.remote(roomID, msg(bob, "bob's words"), nil)
		r2 := redact(held.EventID())
		if out, err := w.receive(r2); err != nil || out != rooms.Stored {
			t.Fatalf("early redaction: %v %v", out, err)
		}
		if out, err := w.receive(held); err != nil || out != rooms.Stored {
			t.Fatalf("held message: %v %v", out, err)
		}
		e, err := w.db.Event(ctx, held.EventID())
		if err != nil || e.RedactedBy != r2.EventID() || strings.Contains(string(e.JSON), "bob's words") {
			t.Fatalf("held message after its redaction arrived first: %+v %v", e, err)
		}
	})
}

func TestOutOfBandInvite(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		// b.test's room, which a.test does not hold: an invite of carol.
		other := "!other:b.test"
		invite := w.buildForeign(other, bob, spec.MRoomMember, carol, map[string]any{"membership": "invite"})
		stripped := json.RawMessage(`{"invite_room_state":[]}`)
		err := w.db.WriteTx(ctx, func(tx *storage.Tx) error {
			return w.r.AppendOutOfBand(ctx, tx, invite, "11", stripped)
		})
		if err != nil {
			t.Fatal(err)
		}
		st, err := w.db.Snapshot(ctx, w.room(other).CurrentSnapshot)
		if err != nil || st[storage.StateKey{Type: spec.MRoomMember, StateKey: carol}] != invite.EventID() {
			t.Fatalf("carol's membership after the invite: %v %v", st, err)
		}
		// Only membership events are stored that way.
		msgPDU := w.buildForeign(other, bob, "m.room.message", "", map[string]any{"body": "x"})
		err = w.db.WriteTx(ctx, func(tx *storage.Tx) error { return w.r.AppendOutOfBand(ctx, tx, msgPDU, "11", nil) })
		if !errors.Is(err, rooms.ErrBadEvent) {
			t.Fatalf("a message stored out of band: %v", err)
		}
	})
}

// buildForeign builds an event of a room a.test does not hold, signed by
// b.test (stateKey "" with a message type means no state key).
func (w *world) buildForeign(roomID, sender, typ, stateKey string, content any) gomatrixserverlib.PDU {
	w.t.Helper()
	ver, _ := rooms.Version("11")
	b, _ := json.Marshal(content)
	proto := gomatrixserverlib.ProtoEvent{SenderID: sender, RoomID: roomID, Type: typ, Content: b, Depth: 5,
		PrevEvents: []string{"$prev"}, AuthEvents: []string{"$auth"}, Version: ver}
	if typ == spec.MRoomMember {
		proto.StateKey = &stateKey
	}
	pdu, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(w.clock, "b.test", "ed25519:b", w.keyB)
	if err != nil {
		w.t.Fatal(err)
	}
	return pdu
}
