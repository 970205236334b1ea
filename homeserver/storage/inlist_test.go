package storage

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestEventsStatementsBounded: loading events by ID lists of every length
// from 1 to 700 prepares at most inListShapes statements on the reader
// pool (the pool and pgx keep every distinct statement on every
// connection for good: one per list length grew a PostgreSQL server's
// heap for an hour in the soak), and the padded lists still return each
// stored event once and nothing for unknown IDs.
func TestEventsStatementsBounded(t *testing.T) {
	for _, b := range storagetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			db, err := Open(ctx, b.Open(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			const room = "!inlist:test"
			var stored []string
			err = db.WriteTx(ctx, func(tx *Tx) error {
				if err := tx.CreateRoom(ctx, Room{RoomID: room, Version: "11", Creator: "@a:test"}); err != nil {
					return err
				}
				for i := range 5 {
					id := fmt.Sprintf("$stored%d", i)
					stored = append(stored, id)
					if err := tx.StoreOutlier(ctx, Event{EventID: id, RoomID: room, Type: "m.room.message",
						Sender: "@a:test", JSON: []byte(`{}`)}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			count := func() int {
				db.r.mu.Lock()
				defer db.r.mu.Unlock()
				return len(db.r.stmts)
			}
			before := count()
			for n := 1; n <= 700; n++ {
				ids := make([]string, 0, n)
				for i := range n {
					ids = append(ids, fmt.Sprintf("$unknown%d", i))
				}
				// The stored events sit at the end of the list, where the
				// padding repeats the last of them.
				copy(ids[max(0, n-len(stored)):], stored)
				evs, err := db.Events(ctx, ids)
				if err != nil {
					t.Fatalf("%d IDs: %v", n, err)
				}
				var got []string
				for _, e := range evs {
					got = append(got, e.EventID)
				}
				slices.Sort(got)
				want := append([]string(nil), stored[:min(n, len(stored))]...)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("%d IDs: got %v, want %v", n, got, want)
				}
			}
			if grown := count() - before; grown > inListShapes {
				t.Errorf("lists of 1..700 IDs left %d prepared statements on the reader pool, want at most %d", grown, inListShapes)
			}
		})
	}
}
