package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
)

// TestTimelineWindowMatchesDatabase writes events into several rooms
// (concurrently, so that group commit batches them; some writes fail after
// appending and roll back; some redact), then checks that every Timeline
// answered from the in-memory window equals the database's answer.
func TestTimelineWindowMatchesDatabase(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "w.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.window == nil {
		t.Fatal("SQLite database without a timeline window")
	}
	rooms := []string{"!a:x", "!b:x", "!c:x"}
	for _, r := range rooms {
		if err := db.WriteTx(ctx, func(tx *Tx) error { return tx.CreateRoom(ctx, Room{RoomID: r, Version: "11"}) }); err != nil {
			t.Fatal(err)
		}
	}
	errBoom := errors.New("boom")
	var mu sync.Mutex
	var ids []string
	appendEv := func(tx *Tx, room string, n int, state bool) (string, error) {
		e := Event{EventID: fmt.Sprintf("$%d-%d", n, rand.Int()), RoomID: room, Type: "m.room.message",
			Sender: "@u:x", JSON: []byte(fmt.Sprintf(`{"n":%d}`, n)), TxnDevice: "D", TxnID: fmt.Sprint(n)}
		if state {
			sk := fmt.Sprint(n % 3)
			e.Type, e.StateKey, e.UnsignedExtra = "m.room.topic", &sk, []byte(`{"prev_content":{}}`)
		}
		_, err := tx.AppendEvent(ctx, NewEvent{Event: e, Before: StateMap{}})
		return e.EventID, err
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 60 {
				n := w*1000 + i
				room := rooms[(w+i)%len(rooms)]
				err := db.WriteTx(ctx, func(tx *Tx) error {
					id, err := appendEv(tx, room, n, i%7 == 0)
					if err != nil {
						return err
					}
					switch {
					case i%11 == 5:
						return errBoom // appended, then rolled back
					case i%13 == 3 && i < 25:
						mu.Lock()
						victim := ids[rand.IntN(len(ids))]
						mu.Unlock()
						if err := tx.Redact(ctx, victim, []byte(`{"redacted":true}`), id); err != nil {
							return err
						}
					}
					mu.Lock()
					ids = append(ids, id)
					mu.Unlock()
					return nil
				})
				if err != nil && !errors.Is(err, errBoom) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	top, err := db.MaxPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hits := 0
	for range 2000 {
		room := rooms[rand.IntN(len(rooms))]
		upto := top - rand.Int64N(40)
		after := upto - rand.Int64N(250)
		limit := 1 + rand.IntN(30)
		want, wantLimited, err := db.timelineDB(ctx, room, after, upto, limit)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, ok := db.window.timeline(room, after, upto, limit); ok {
			hits++
		}
		got, gotLimited, err := db.Timeline(ctx, room, after, upto, limit)
		if err != nil {
			t.Fatal(err)
		}
		if gotLimited != wantLimited || !reflect.DeepEqual(got, want) {
			t.Fatalf("Timeline(%s, %d, %d, %d): window %d events limited %v, database %d events limited %v\nwindow %+v\ndatabase %+v",
				room, after, upto, limit, len(got), gotLimited, len(want), wantLimited, got, want)
		}
	}
	// The whole history is more than a window holds: the database answers.
	if _, _, ok := db.window.timeline(rooms[0], 0, top, 1000); ok {
		t.Fatal("the window claims to hold a room's whole history")
	}
	if hits < 500 {
		t.Fatalf("the window answered %d of 2000 reads; the test would not notice it being wrong", hits)
	}
	t.Logf("window answered %d of 2000 reads", hits)
}

// TestMembershipsCacheFollowsWrites reads memberships while membership
// events are written concurrently; afterwards every cached answer equals
// the database's.
func TestMembershipsCacheFollowsWrites(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "m.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	users := []string{"@a:x", "@b:x", "@c:x"}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() { // a reader that keeps the cache warm during the writes
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, u := range users {
				if _, err := db.Memberships(ctx, u); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	for i := range 30 {
		room := fmt.Sprintf("!r%d:x", i)
		err := db.WriteTx(ctx, func(tx *Tx) error {
			if err := tx.CreateRoom(ctx, Room{RoomID: room, Version: "11"}); err != nil {
				return err
			}
			for j, u := range users[:1+i%3] {
				sk := u
				ms := []string{"join", "invite", "leave"}[(i+j)%3]
				e := Event{EventID: fmt.Sprintf("$m%d-%d", i, j), RoomID: room, Type: "m.room.member", StateKey: &sk,
					Sender: u, JSON: []byte(`{}`)}
				if _, err := tx.AppendEvent(ctx, NewEvent{Event: e, Before: StateMap{}, Membership: ms}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	for _, u := range users {
		want, err := db.membershipsDB(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		got, err := db.Memberships(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) || len(want) == 0 {
			t.Errorf("%s: cached %v, database %v", u, got, want)
		}
		if _, ok := db.window.members.get(u); !ok {
			t.Errorf("%s: not cached after a read", u)
		}
	}
}
