package storage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestGroupCommitIsolatesFailures runs many concurrent writes, some of
// which fail after writing; the failing ones must leave nothing behind and
// the others must all be committed.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	for _, b := range storagetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, err := storage.Open(ctx, b.Open(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			errBoom := errors.New("boom")
			var wg sync.WaitGroup
			results := make([]error, 200)
			for i := range results {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					if i%3 == 0 {
						results[i] = db.WriteTx(ctx, func(tx *storage.Tx) error {
							// Write, then fail: the write must be rolled back.
							if _, err := tx.ExecContext(ctx, `INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, 'r', 'c')`, fmt.Sprint("#bad", i)); err != nil {
								return err
							}
							return errBoom
						})
						return
					}
					results[i] = db.SetAlias(ctx, fmt.Sprint("#ok", i), "!room", "@c")
				}(i)
			}
			wg.Wait()
			for i, err := range results {
				_, _, lookErr := db.Alias(ctx, fmt.Sprint("#bad", i))
				if i%3 == 0 {
					if !errors.Is(err, errBoom) || !errors.Is(lookErr, storage.ErrNotFound) {
						t.Fatalf("failing write %d: err %v, lookup %v", i, err, lookErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				if room, _, err := db.Alias(ctx, fmt.Sprint("#ok", i)); err != nil || room != "!room" {
					t.Fatalf("write %d not committed: %q %v", i, room, err)
				}
			}
			// A duplicate alias (ErrExists from inside the batch) does not
			// disturb its neighbours either.
			if err := db.SetAlias(ctx, "#ok1", "!other", "@c"); !errors.Is(err, storage.ErrExists) {
				t.Fatalf("duplicate alias: %v", err)
			}
			db.Close()
			if err := db.SetAlias(ctx, "#late", "!r", "@c"); !errors.Is(err, storage.ErrClosed) {
				t.Fatalf("write after close: %v", err)
			}
		})
	}
}
