package storage

import (
	"context"
	"database/sql"
	"sync"
)

// pool is a database/sql pool that prepares each distinct statement once
// and reuses it: SQLite (modernc) otherwise parses the SQL text on every
// call, which was a sixth of the CPU time of a message send.
type pool struct {
	*sql.DB

	mu    sync.Mutex // guards stmts
	stmts map[string]*sql.Stmt
}

func newPool(db *sql.DB) *pool { return &pool{DB: db, stmts: make(map[string]*sql.Stmt)} }

// stmt returns the prepared statement for q, preparing it on first use.
func (p *pool) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	p.mu.Lock()
	st, ok := p.stmts[q]
	p.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := p.DB.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if prev, ok := p.stmts[q]; ok {
		st.Close()
		return prev, nil
	}
	p.stmts[q] = st
	return st, nil
}

// QueryRowContext is sql.DB's, through the statement cache.
func (p *pool) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := p.stmt(ctx, q)
	if err != nil {
		return p.DB.QueryRowContext(ctx, q, args...) // reports the error
	}
	return st.QueryRowContext(ctx, args...)
}

// QueryContext is sql.DB's, through the statement cache.
func (p *pool) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := p.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// ExecContext is sql.DB's, through the statement cache.
func (p *pool) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := p.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// Close closes the cached statements and the pool.
func (p *pool) Close() error {
	p.mu.Lock()
	for _, st := range p.stmts {
		st.Close()
	}
	p.stmts = nil
	p.mu.Unlock()
	return p.DB.Close()
}

// cached returns the pool's prepared statement for q if there is one. It
// never prepares: inside a transaction the writer's only SQLite connection
// is taken, so preparing on the pool would wait forever. Misses are noted
// and prepared by WriteTx after the commit.
func (p *pool) cached(q string) *sql.Stmt {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stmts[q]
}

// prepareAll prepares statements a transaction missed.
func (p *pool) prepareAll(ctx context.Context, qs []string) {
	for _, q := range qs {
		_, _ = p.stmt(ctx, q) // a statement that fails to prepare fails when run
	}
}

func (tx *Tx) txStmt(ctx context.Context, q string) *sql.Stmt {
	if st := tx.db.w.cached(q); st != nil {
		return tx.tx.StmtContext(ctx, st)
	}
	tx.missed = append(tx.missed, q)
	return nil
}

// QueryRowContext runs q in the transaction (Tx is a querier).
// Statements in a write transaction are not cancelled with ctx (see WriteTx).
func (tx *Tx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	ctx = context.WithoutCancel(ctx)
	if st := tx.txStmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.tx.QueryRowContext(ctx, q, args...)
}

// QueryContext runs q in the transaction.
func (tx *Tx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	ctx = context.WithoutCancel(ctx)
	if st := tx.txStmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return tx.tx.QueryContext(ctx, q, args...)
}

// ExecContext runs q in the transaction.
func (tx *Tx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	ctx = context.WithoutCancel(ctx)
	if st := tx.txStmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.tx.ExecContext(ctx, q, args...)
}
