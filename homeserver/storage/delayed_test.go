package storage

import (
	"context"
	"errors"
	"testing"
)

// TestDelayedEventsStore: the delayed-event and sticky-event tables on
// both databases: a delayed event is taken at most once, restarts move
// its due time, supersession spares the owner, sticky records expire.
func TestDelayedEventsStore(t *testing.T) {
	ctx := context.Background()
	forEachDB(t, func(t *testing.T, db *DB) {
		key := "_@a:x_D_m.call"
		empty := ""
		add := func(d DelayedEvent) {
			t.Helper()
			if err := db.WriteTx(ctx, func(tx *Tx) error { return tx.AddDelayedEvent(ctx, d) }); err != nil {
				t.Fatal(err)
			}
		}
		add(DelayedEvent{DelayID: "d1", UserID: "@a:x", DeviceID: "D", RoomID: "!r:x", Type: "org.matrix.msc3401.call.member",
			StateKey: &key, Content: []byte(`{}`), DelayMS: 1000, RunningSince: 100, SendAt: 1100})
		add(DelayedEvent{DelayID: "d2", UserID: "@b:x", DeviceID: "E", RoomID: "!r:x", Type: "org.matrix.msc3401.call.member",
			StateKey: &key, Content: []byte(`{"x":1}`), DelayMS: 5000, RunningSince: 100, SendAt: 5100, StickyMS: 60000})
		add(DelayedEvent{DelayID: "d3", UserID: "@a:x", DeviceID: "D", RoomID: "!r:x", Type: "m.room.message",
			Content: []byte(`{"body":"x"}`), DelayMS: 3000, RunningSince: 100, SendAt: 3100})
		add(DelayedEvent{DelayID: "d4", UserID: "@a:x", DeviceID: "D", RoomID: "!r:x", Type: "m.room.topic",
			StateKey: &empty, Content: []byte(`{}`), DelayMS: 3000, RunningSince: 100, SendAt: 3100})

		got, err := db.DelayedEvent(ctx, "d2")
		if err != nil || got.StateKey == nil || *got.StateKey != key || string(got.Content) != `{"x":1}` || got.StickyMS != 60000 {
			t.Fatalf("d2 read back as %+v, %v", got, err)
		}
		if m, err := db.DelayedEvent(ctx, "d3"); err != nil || m.StateKey != nil {
			t.Fatalf("message event read back with a state key: %+v %v", m, err)
		}
		if e, err := db.DelayedEvent(ctx, "d4"); err != nil || e.StateKey == nil || *e.StateKey != "" {
			t.Fatalf("empty state key lost: %+v %v", e, err)
		}
		if next, ok, err := db.NextDelayedSendAt(ctx); err != nil || !ok || next != 1100 {
			t.Fatalf("next %d %v %v, want 1100", next, ok, err)
		}
		if due, err := db.DueDelayedEvents(ctx, 3100, 10); err != nil || len(due) != 3 || due[0].DelayID != "d1" {
			t.Fatalf("due at 3100: %+v %v", due, err)
		}
		// Restart d1 at 2000: due at 3000.
		if err := db.WriteTx(ctx, func(tx *Tx) error { return tx.RestartDelayedEvent(ctx, "d1", 2000) }); err != nil {
			t.Fatal(err)
		}
		if d, _ := db.DelayedEvent(ctx, "d1"); d.RunningSince != 2000 || d.SendAt != 3000 {
			t.Fatalf("restarted: %+v", d)
		}
		err = db.WriteTx(ctx, func(tx *Tx) error { return tx.RestartDelayedEvent(ctx, "nope", 1) })
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("restart of an unknown delay: %v", err)
		}
		// @a:x changes the state: @b:x's delayed event for it goes, @a:x's stays.
		var n int64
		if err := db.WriteTx(ctx, func(tx *Tx) (err error) {
			n, err = tx.CancelDelayedStateEvents(ctx, "!r:x", "org.matrix.msc3401.call.member", key, "@a:x")
			return err
		}); err != nil || n != 1 {
			t.Fatalf("cancelled %d, %v; want 1", n, err)
		}
		if _, err := db.DelayedEvent(ctx, "d2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("superseded d2: %v", err)
		}
		// Taken once only.
		if err := db.WriteTx(ctx, func(tx *Tx) error { _, err := tx.TakeDelayedEvent(ctx, "d1"); return err }); err != nil {
			t.Fatal(err)
		}
		err = db.WriteTx(ctx, func(tx *Tx) error { _, err := tx.TakeDelayedEvent(ctx, "d1"); return err })
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("second take: %v", err)
		}
		if c, err := countDelayed(ctx, db, "@a:x"); err != nil || c != 2 {
			t.Fatalf("count %d %v, want 2", c, err)
		}
		if list, err := db.DelayedEvents(ctx, "@a:x"); err != nil || len(list) != 2 {
			t.Fatalf("list %+v %v", list, err)
		}
	})
}

func countDelayed(ctx context.Context, db *DB, user string) (n int, err error) {
	err = db.WriteTx(ctx, func(tx *Tx) (err error) { n, err = tx.CountDelayedEvents(ctx, user); return err })
	return n, err
}

// TestStickyRecords: sticky records are read while live and forgotten
// once expired.
func TestStickyRecords(t *testing.T) {
	ctx := context.Background()
	forEachDB(t, func(t *testing.T, db *DB) {
		if err := db.WriteTx(ctx, func(tx *Tx) error { return tx.AddStickyEvent(ctx, "$s", "!r:x", 5, 1000) }); err != nil {
			t.Fatal(err)
		}
		if has, err := db.HasExpiredSticky(ctx, 999); err != nil || has {
			t.Fatalf("expired at 999: %v %v", has, err)
		}
		if has, err := db.HasExpiredSticky(ctx, 1000); err != nil || !has {
			t.Fatalf("not expired at 1000: %v %v", has, err)
		}
		if err := db.WriteTx(ctx, func(tx *Tx) error { return tx.ForgetExpiredSticky(ctx, 1000) }); err != nil {
			t.Fatal(err)
		}
		if has, err := db.HasExpiredSticky(ctx, 5000); err != nil || has {
			t.Fatalf("record kept after forgetting: %v %v", has, err)
		}
	})
}
