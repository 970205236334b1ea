package rooms_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// world is one server ("a.test") with a real database, plus the signing
// key of a second server ("b.test") whose events it receives.
type world struct {
	t     *testing.T
	db    *storage.DB
	r     *rooms.Rooms
	keyB  ed25519.PrivateKey
	clock time.Time

	mu       sync.Mutex // guards appended
	appended []rooms.Appended
}

const (
	alice = "@alice:a.test"
	carol = "@carol:a.test"
	bob   = "@bob:b.test"
)

// newWorlds runs fn on every storage backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, w *world)) {
	for _, b := range storagetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			fn(t, newWorld(t, b))
		})
	}
}

func newWorld(t *testing.T, b storagetest.Backend) *world {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, b.Open(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, keyA, _ := ed25519.GenerateKey(nil)
	_, keyB, _ := ed25519.GenerateKey(nil)
	w := &world{t: t, db: db, keyB: keyB, clock: time.UnixMilli(1_700_000_000_000)}
	w.r, err = rooms.New(rooms.Config{
		ServerName: "a.test", KeyID: "ed25519:a", SigningKey: keyA,
		Now: func() time.Time { return w.clock },
		AfterAppend: func(_ context.Context, _ *storage.Tx, a rooms.Appended) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.appended = append(w.appended, a)
			return nil
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func state(typ, key string, content any) rooms.Event {
	b, _ := json.Marshal(content)
	k := key
	return rooms.Event{Type: typ, StateKey: &k, Content: b}
}

// createRoom makes a public room of alice's with the usual first events.
func (w *world) createRoom(roomID string) {
	w.t.Helper()
	ctx := context.Background()
	evs := []rooms.Event{
		state(spec.MRoomCreate, "", map[string]any{"room_version": "11"}),
		state(spec.MRoomMember, alice, map[string]any{"membership": "join"}),
		state(spec.MRoomPowerLevels, "", map[string]any{"users": map[string]int{alice: 100}}),
		state(spec.MRoomJoinRules, "", map[string]any{"join_rule": "public"}),
	}
	err := w.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if err := tx.CreateRoom(ctx, storage.Room{RoomID: roomID, Version: "11", Creator: alice, CreatedTS: w.clock.UnixMilli()}); err != nil {
			return err
		}
		wr, err := w.r.Open(ctx, tx, roomID)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			ev.Sender = alice
			if _, err := wr.Append(ctx, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		w.t.Fatalf("create room: %v", err)
	}
}

// send appends a local event in its own write.
func (w *world) send(roomID string, ev rooms.Event) (storage.Event, error) {
	var out storage.Event
	err := w.db.WriteTx(context.Background(), func(tx *storage.Tx) error {
		wr, err := w.r.Open(context.Background(), tx, roomID)
		if err != nil {
			return err
		}
		out, err = wr.Append(context.Background(), ev)
		return err
	})
	return out, err
}

func msg(sender, body string) rooms.Event {
	b, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": body})
	return rooms.Event{Sender: sender, Type: "m.room.message", Content: b}
}

// remote builds an event as b.test would: on a.test's frontier (or on
// prevs when given), signed with b's key.
func (w *world) remote(roomID string, ev rooms.Event, mutate func(*gomatrixserverlib.ProtoEvent)) gomatrixserverlib.PDU {
	w.t.Helper()
	ctx := context.Background()
	var pdu gomatrixserverlib.PDU
	err := w.db.WriteTx(ctx, func(tx *storage.Tx) error {
		wr, err := w.r.Open(ctx, tx, roomID)
		if err != nil {
			return err
		}
		proto, err := wr.Template(ctx, ev)
		if err != nil {
			return err
		}
		if mutate != nil {
			mutate(proto)
		}
		pdu, err = wr.Version().NewEventBuilderFromProtoEvent(proto).Build(w.clock, "b.test", "ed25519:b", w.keyB)
		return err
	})
	if err != nil {
		w.t.Fatalf("build remote event: %v", err)
	}
	return pdu
}

// receive appends a remote PDU in its own write.
func (w *world) receive(pdu gomatrixserverlib.PDU) (rooms.Outcome, error) {
	var out rooms.Outcome
	err := w.db.WriteTx(context.Background(), func(tx *storage.Tx) error {
		wr, err := w.r.Open(context.Background(), tx, pdu.RoomID().String())
		if err != nil {
			return err
		}
		_, out, err = wr.AppendRemote(context.Background(), pdu)
		return err
	})
	return out, err
}

func (w *world) room(roomID string) storage.Room {
	w.t.Helper()
	r, err := w.db.Room(context.Background(), roomID)
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

func (w *world) stateMap(roomID string) storage.StateMap {
	w.t.Helper()
	st, err := w.db.Snapshot(context.Background(), w.room(roomID).CurrentSnapshot)
	if err != nil {
		w.t.Fatal(err)
	}
	return st
}
