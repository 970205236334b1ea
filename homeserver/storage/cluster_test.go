package storage_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestClusterPositionsCommitInOrder opens one PostgreSQL database from two
// nodes in cluster mode and writes from both at once, while a reader
// watches the committed positions as fast as it can: it reads the highest
// committed position m, then every position up to m; a position that
// shows up at or below an m read before it, and was not there then,
// committed out of order, and a /sync reader that had read up to m would
// have skipped it for good. Each node's batch links (prev, last] must also
// chain: every batch starts where a committed batch of some node ended.
func TestClusterPositionsCommitInOrder(t *testing.T) {
	if os.Getenv(storagetest.EnvPostgres) == "" {
		t.Skipf("%s is not set (PostgreSQL legs run under make test; cluster mode is PostgreSQL only)", storagetest.EnvPostgres)
	}
	dsn := storagetest.NewPostgresDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type link struct{ prev, last int64 }
	var linksMu sync.Mutex
	var links []link
	var dbs []*storage.DB
	for range 2 {
		db, err := storage.OpenWith(ctx, dsn, storage.Options{Cluster: true, OnBatch: func(prev, last int64) {
			linksMu.Lock()
			links = append(links, link{prev, last})
			linksMu.Unlock()
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs = append(dbs, db)
	}
	watch, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()

	var stop atomic.Bool
	var violation error
	watched := make(chan int)
	go func() {
		// seen holds every position read so far; high the highest m.
		seen := make(map[int64]bool)
		var high int64
		reads := 0
		defer func() { watched <- reads }()
		for !stop.Load() {
			var m sql.NullInt64
			if err := watch.QueryRowContext(ctx, `SELECT MAX(pos) FROM stream_positions`).Scan(&m); err != nil {
				violation = err
				return
			}
			rows, err := watch.QueryContext(ctx, `SELECT pos FROM stream_positions WHERE pos <= $1`, m.Int64)
			if err != nil {
				violation = err
				return
			}
			for rows.Next() {
				var p int64
				if err := rows.Scan(&p); err != nil {
					violation = err
					return
				}
				if !seen[p] && p <= high {
					violation = fmt.Errorf("position %d committed after %d had been read as the highest", p, high)
				}
				seen[p] = true
			}
			rows.Close()
			high = max(high, m.Int64)
			reads++
			if violation != nil {
				return
			}
		}
	}()

	const writers, each = 6, 40
	var wg sync.WaitGroup
	for w := range writers {
		db := dbs[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				user := fmt.Sprintf("@u%d:test", w)
				// Several positions per write widen the window between a
				// position's allocation and its commit.
				msgs := make([]storage.ToDevice, 4)
				for k := range msgs {
					msgs[k] = storage.ToDevice{UserID: user, DeviceID: "D", Sender: user, Type: "m.test", Content: []byte(fmt.Sprintf(`{"i":%d}`, i))}
				}
				if _, err := db.PutToDevice(ctx, msgs); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	reads := <-watched
	if violation != nil {
		t.Fatal(violation)
	}
	t.Logf("%d writes of 4 positions from 2 nodes; the watcher read %d times", writers*each, reads)

	// The links chain from 0 to the highest position, each batch starting
	// where another ended.
	linksMu.Lock()
	defer linksMu.Unlock()
	next := make(map[int64]int64, len(links))
	for _, l := range links {
		if _, dup := next[l.prev]; dup {
			t.Fatalf("two batches started after position %d", l.prev)
		}
		next[l.prev] = l.last
	}
	var at int64
	for n := range links {
		last, ok := next[at]
		if !ok {
			t.Fatalf("after %d of %d links no batch starts at %d", n, len(links), at)
		}
		at = last
	}
	m, err := dbs[0].MaxPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if at != m || m != writers*each*4 {
		t.Fatalf("the links end at %d, the database at %d, want %d", at, m, writers*each*4)
	}
}

// TestClusterRefusesSQLite: cluster mode is PostgreSQL only.
func TestClusterRefusesSQLite(t *testing.T) {
	_, err := storage.OpenWith(context.Background(), t.TempDir()+"/x.db", storage.Options{Cluster: true})
	if !errors.Is(err, storage.ErrClusterSQLite) {
		t.Fatalf("cluster mode on SQLite: %v", err)
	}
	if _, err := storage.OpenPositions("sqlite:x.db"); !errors.Is(err, storage.ErrClusterSQLite) {
		t.Fatalf("positions on SQLite: %v", err)
	}
}

// BenchmarkPostgresWrites measures small writes (account data, one
// position each) from many goroutines on PostgreSQL: one node as today,
// one node in cluster mode (the write lock's own cost), and two nodes in
// cluster mode sharing the lock.
func BenchmarkPostgresWrites(b *testing.B) {
	if os.Getenv(storagetest.EnvPostgres) == "" {
		b.Skipf("%s is not set", storagetest.EnvPostgres)
	}
	for _, bc := range []struct {
		name    string
		nodes   int
		cluster bool
	}{{"single", 1, false}, {"cluster-1node", 1, true}, {"cluster-2nodes", 2, true}} {
		b.Run(bc.name, func(b *testing.B) {
			dsn := storagetest.NewPostgresDB(b)
			ctx := context.Background()
			var dbs []*storage.DB
			for range bc.nodes {
				db, err := storage.OpenWith(ctx, dsn, storage.Options{Cluster: bc.cluster})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				dbs = append(dbs, db)
			}
			var n atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := n.Add(1)
				db := dbs[int(i)%len(dbs)]
				user := fmt.Sprintf("@u%d:test", i)
				for j := 0; pb.Next(); j++ {
					if _, err := db.PutAccountData(ctx, user, "", "m.test", []byte(fmt.Sprintf(`{"j":%d}`, j))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}

// TestClusterNodesMigrateTogether: nodes that start at once on a fresh
// PostgreSQL database all open it; one migrates, the others wait for it.
func TestClusterNodesMigrateTogether(t *testing.T) {
	if os.Getenv(storagetest.EnvPostgres) == "" {
		t.Skipf("%s is not set (PostgreSQL legs run under make test)", storagetest.EnvPostgres)
	}
	dsn := storagetest.NewPostgresDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const nodes = 3
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := storage.OpenWith(ctx, dsn, storage.Options{Cluster: true})
			if err == nil {
				db.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: %v", i, err)
		}
	}
}
