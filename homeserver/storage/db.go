// Package storage is the homeserver's database layer: one set of SQL
// statements over database/sql for SQLite (modernc.org/sqlite, the default)
// and PostgreSQL (pgx/v5 stdlib). Statements are shared wherever both
// dialects accept them; the few real differences live in dialect.go.
//
// SQLite runs in WAL mode with synchronous=FULL and one writer connection,
// so an acknowledged write survives kill -9 and a power cut alike.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// pgMaxIdle is how long a PostgreSQL connection may sit idle in the pool.
const pgMaxIdle = time.Minute

// DB is an open, migrated database.
type DB struct {
	dialect dialect
	w       *pool // writer pool (one connection on SQLite)
	r       *pool // reader pool
	// One goroutine writes (see writer.go): SQLite allows one writer, stream
	// positions must commit in the order they were allocated so that a
	// reader never skips one that commits late, and queued writes share one
	// commit (group commit).
	queue    chan *writeReq
	closed   chan struct{}
	loopDone chan struct{}
	closeMu  sync.Once
	onCommit OnCommit
	// cluster: writes take the cluster write lock and report onBatch
	// (cluster.go).
	cluster bool
	onBatch func(prev, last int64)

	snapshots snapshotCache
	caches    readCaches
	// window is nil on PostgreSQL (see window.go).
	window *timelineWindow
}

// Open connects to dsn and applies pending migrations. A dsn starting with
// "postgres://" or "postgresql://" selects PostgreSQL; anything else is a
// SQLite file path, optionally prefixed "sqlite:" or "file:".
//
// onCommit, if not nil, is called from the writer goroutine after every
// commit (see notify.go); it must not block for long.
func Open(ctx context.Context, dsn string, onCommit OnCommit) (*DB, error) {
	return open(ctx, dsn, Options{OnCommit: onCommit})
}

func isPostgresDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

func open(ctx context.Context, dsn string, o Options) (*DB, error) {
	if dsn == "" {
		return nil, ErrNoDatabase
	}
	db := &DB{onCommit: o.OnCommit, cluster: o.Cluster, onBatch: o.OnBatch}
	if isPostgresDSN(dsn) {
		db.dialect = postgres
		sqlDB, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("storage: open postgres: %w", err)
		}
		db.w = newPool(sqlDB)
		db.w.SetMaxOpenConns(16)
		// Keep the connections open: without this, database/sql keeps 2
		// idle and a busy server reconnects (and authenticates) constantly.
		db.w.SetMaxIdleConns(16)
		// ... but not forever: each connection holds every statement the
		// pool prepared (stmtcache.go) on the server and in pgx, so a
		// pool that stays at its peak keeps the peak's memory. After a
		// quiet minute a connection is closed.
		db.w.SetConnMaxIdleTime(pgMaxIdle)
		db.r = db.w
	} else {
		db.dialect = sqlite
		db.window = &timelineWindow{}
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "file:")
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		q := "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)&_txlock=immediate"
		w, err := sql.Open("sqlite", "file:"+path+q)
		if err != nil {
			return nil, fmt.Errorf("storage: open sqlite: %w", err)
		}
		db.w = newPool(w)
		db.w.SetMaxOpenConns(1)
		r, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(ON)")
		if err != nil {
			db.w.Close()
			return nil, fmt.Errorf("storage: open sqlite: %w", err)
		}
		db.r = newPool(r)
		db.r.SetMaxOpenConns(8)
		db.r.SetMaxIdleConns(8)
	}
	if err := db.w.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: connect: %w", err)
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	db.startWriter()
	return db, nil
}

// Close closes both pools.
func (db *DB) Close() error {
	db.stopWriter()
	var errs []error
	if db.r != nil && db.r != db.w {
		errs = append(errs, db.r.Close())
	}
	if db.w != nil {
		errs = append(errs, db.w.Close())
	}
	return errors.Join(errs...)
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.w.PingContext(ctx); err != nil {
		return fmt.Errorf("storage: ping: %w", err)
	}
	var one int
	if err := db.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("storage: ping: %w", err)
	}
	return nil
}

// IsPostgres reports the dialect, for tests and diagnostics.
func (db *DB) IsPostgres() bool { return db.dialect == postgres }

// Tx is a write transaction. It is only ever used by the goroutine that
// called WriteTx.
type Tx struct {
	tx *sql.Tx
	db *DB
	// missed lists statements to prepare once the transaction is over.
	missed []string
	// maxPos and keys are what the running write allocated and touched.
	maxPos int64
	keys   []string
	// win is what the running write reports to the timeline window.
	win pendingWindow
}

// nextPos allocates the next position of the one stream that orders
// everything /sync delivers (events, receipts, account data, to-device
// messages, device list changes).
func (tx *Tx) nextPos(ctx context.Context) (int64, error) {
	var pos int64
	err := tx.QueryRowContext(ctx, tx.db.dialect.nextPosSQL).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("storage: allocate stream position: %w", err)
	}
	tx.maxPos = max(tx.maxPos, pos)
	return pos, nil
}

// MaxPos is the highest committed stream position.
func (db *DB) MaxPos(ctx context.Context) (int64, error) {
	var pos sql.NullInt64
	if err := db.r.QueryRowContext(ctx, db.dialect.maxPosSQL).Scan(&pos); err != nil {
		return 0, fmt.Errorf("storage: max position: %w", err)
	}
	return pos.Int64, nil
}

func (tx *Tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return tx.ExecContext(ctx, q, args...)
}

func (tx *Tx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return tx.QueryRowContext(ctx, q, args...)
}

func (tx *Tx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return tx.QueryContext(ctx, q, args...)
}
