package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// Several nodes on one PostgreSQL database (homeserver/cluster runs them).
//
// Every node keeps its own group-commit writer (writer.go). Two things
// must then hold across nodes, as they do by construction in one process:
//
//  1. Stream positions become visible in commit order. A position comes
//     from a sequence (nextPos) in the middle of a transaction; with two
//     writers, node A could take 10, node B 11, and B commit first: a
//     reader that read up to 11 would skip 10 for good when it commits.
//  2. A room is written by one node at a time: an append reads the room's
//     current state and forward extremities and writes after them, so two
//     nodes appending at once would fork the room or check an event
//     against stale state.
//
// The simplest design that gives both: in cluster mode each group-commit
// transaction starts by taking one cluster-wide transaction advisory lock
// (pg_advisory_xact_lock(lockWrites)), held until it commits or rolls back.
// Transactions that write then run one after another across the cluster,
// so positions commit in the order they were allocated (1), and whatever a
// write reads inside its transaction, a room's state or a client's
// transaction ID (the txns table), is what the last commit left (2). A
// lock per room, taken in sorted order, would let writes to different
// rooms overlap, but a batch holds many rooms and positions must still be
// allocated in commit order, so it needs a second, position lock that is
// taken after the room locks; with group commit that ordering cannot be
// kept inside one batch without deadlocks, and on a small machine the
// batches already carry the load. Each node's batches grow under load, so
// the cluster sustains roughly one writer's throughput, which is what one
// node sustains today. Single-node mode takes no lock.
//
// The writer also reads, under the lock, the highest committed position
// before its batch (prev) and reports (prev, last) after the commit
// (Options.OnBatch): a node that hears every batch's link can tell that it
// knows every commit up to a position, and which keys they touched, with
// no gap (homeserver/cluster uses it to decide when a /sync stream may
// skip a query).

// Advisory lock keys of this schema (PostgreSQL; arbitrary, fixed).
const (
	lockMigrate int64 = 0x5357_0001
	lockWrites  int64 = 0x5357_0002
)

// Options configures Open beyond the DSN.
type Options struct {
	// OnCommit, if not nil, is called from the writer goroutine after
	// every commit (see notify.go); it must not block for long.
	OnCommit OnCommit
	// Cluster makes every write transaction take the cluster-wide write
	// lock (PostgreSQL only; see above).
	Cluster bool
	// OnBatch, in cluster mode, is called after the OnCommit calls of each
	// committed batch that allocated positions, with the highest position
	// committed before the batch and the batch's highest position.
	OnBatch func(prev, last int64)
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, dsn string, o Options) (*DB, error) {
	if o.Cluster && !isPostgresDSN(dsn) {
		return nil, ErrClusterSQLite
	}
	return open(ctx, dsn, o)
}

// lockWritesTx takes the cluster write lock at the start of a batch and
// returns the highest committed position. The read is its own statement,
// after the lock: a statement's snapshot is taken when it starts, so one
// statement that locked and read would read from before the wait.
func (db *DB) lockWritesTx(ctx context.Context, tx *sql.Tx) (int64, error) {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, lockWrites); err != nil {
		return 0, fmt.Errorf("storage: cluster write lock: %w", err)
	}
	var prev sql.NullInt64
	if err := tx.QueryRowContext(ctx, db.dialect.maxPosSQL).Scan(&prev); err != nil {
		return 0, fmt.Errorf("storage: cluster write lock: %w", err)
	}
	return prev.Int64, nil
}

// Positions reads the highest committed stream position of a PostgreSQL
// database on a small pool of its own, for a node that polls it while its
// wake-ups are down. It runs no migrations and writes nothing.
type Positions struct {
	db *sql.DB
}

// OpenPositions connects to dsn (PostgreSQL). Nothing is asked of the
// database until Max: a node starts while the database is down.
func OpenPositions(dsn string) (*Positions, error) {
	if !isPostgresDSN(dsn) {
		return nil, ErrClusterSQLite
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("storage: open postgres: %w", err)
	}
	db.SetMaxOpenConns(2)
	db.SetMaxIdleConns(1)
	return &Positions{db: db}, nil
}

// Max returns the highest committed stream position.
func (p *Positions) Max(ctx context.Context) (int64, error) {
	var pos sql.NullInt64
	if err := p.db.QueryRowContext(ctx, postgres.maxPosSQL).Scan(&pos); err != nil {
		return 0, fmt.Errorf("storage: max position: %w", err)
	}
	return pos.Int64, nil
}

// Close closes the pool.
func (p *Positions) Close() error { return p.db.Close() }
