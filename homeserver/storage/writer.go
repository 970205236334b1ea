package storage

import (
	"context"
	"errors"
	"fmt"
)

// ErrClosed is returned by WriteTx after Close.
var ErrClosed = errors.New("storage: database is closed")

// maxBatch bounds how many queued writes share one commit.
const maxBatch = 128

type writeReq struct {
	ctx  context.Context
	fn   func(tx *Tx) error
	done chan error
}

// WriteTx runs fn in a write transaction and returns once the write is
// committed (durable) or refused. Writes from many goroutines are queued
// to one writer, which runs every write waiting at that moment in one
// transaction, each inside its own savepoint, and commits them with one
// fsync: a failing fn rolls back to its savepoint and changes nothing,
// and nobody is answered before the commit.
//
// fn may run on another goroutine; its statements ignore cancellation of
// ctx once started, because an interrupted SQLite statement can roll back
// the whole shared transaction.
func (db *DB) WriteTx(ctx context.Context, fn func(tx *Tx) error) error {
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case db.queue <- req:
	case <-db.closed:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, the write may be committed whatever the caller does
	// meanwhile: wait for the outcome so that "returned nil" means durable.
	return <-req.done
}

func (db *DB) startWriter() {
	db.queue = make(chan *writeReq)
	db.closed = make(chan struct{})
	db.loopDone = make(chan struct{})
	go db.writeLoop()
}

func (db *DB) stopWriter() {
	if db.closed == nil {
		return
	}
	db.closeMu.Do(func() { close(db.closed) })
	<-db.loopDone
}

func (db *DB) writeLoop() {
	defer close(db.loopDone)
	for {
		var first *writeReq
		select {
		case first = <-db.queue:
		case <-db.closed:
			return
		}
		batch := []*writeReq{first}
	collect:
		for len(batch) < maxBatch {
			select {
			case r := <-db.queue:
				batch = append(batch, r)
			default:
				break collect
			}
		}
		db.runBatch(batch)
	}
}

// runBatch runs a batch of writes in one transaction and answers each.
func (db *DB) runBatch(batch []*writeReq) {
	results := make([]error, len(batch))
	answer := func() {
		for i, r := range batch {
			r.done <- results[i]
		}
	}
	failAll := func(err error) {
		for i := range results {
			if results[i] == nil {
				results[i] = err
			}
		}
		answer()
	}
	ctx := context.Background()
	sqlTx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		failAll(fmt.Errorf("storage: begin: %w", err))
		return
	}
	var prev int64
	if db.cluster {
		if prev, err = db.lockWritesTx(ctx, sqlTx); err != nil {
			_ = sqlTx.Rollback()
			failAll(err)
			return
		}
	}
	tx := &Tx{tx: sqlTx, db: db}
	single := len(batch) == 1
	committed := 0
	type touched struct {
		pos  int64
		keys []string
		win  pendingWindow
	}
	notes := make([]touched, len(batch))
	for i, r := range batch {
		tx.maxPos, tx.keys, tx.win = 0, nil, pendingWindow{}
		if err := r.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if !single {
			if _, err := sqlTx.ExecContext(ctx, "SAVEPOINT write"); err != nil {
				_ = sqlTx.Rollback()
				failAll(fmt.Errorf("storage: savepoint: %w", err))
				return
			}
		}
		if err := r.fn(tx); err != nil {
			results[i] = err
			if single {
				break
			}
			if _, rbErr := sqlTx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT write"); rbErr != nil {
				_ = sqlTx.Rollback()
				failAll(fmt.Errorf("storage: rollback to savepoint: %w", rbErr))
				return
			}
		} else {
			committed++
			notes[i] = touched{tx.maxPos, tx.keys, tx.win}
		}
		if !single {
			if _, err := sqlTx.ExecContext(ctx, "RELEASE SAVEPOINT write"); err != nil {
				_ = sqlTx.Rollback()
				failAll(fmt.Errorf("storage: release savepoint: %w", err))
				return
			}
		}
	}
	if committed == 0 {
		_ = sqlTx.Rollback()
		answer()
		return
	}
	if err := sqlTx.Commit(); err != nil {
		failAll(fmt.Errorf("storage: commit: %w", err))
		return
	}
	if db.window != nil {
		for i, n := range notes {
			if results[i] == nil {
				db.window.apply(n.pos, n.win, n.keys)
			}
		}
	}
	var last int64
	if db.onCommit != nil {
		for i, n := range notes {
			if results[i] == nil && n.pos > 0 {
				db.onCommit(n.pos, n.keys)
			}
		}
	}
	for i, n := range notes {
		if results[i] == nil {
			last = max(last, n.pos)
		}
	}
	if db.onBatch != nil && last > prev {
		db.onBatch(prev, last)
	}
	if len(tx.missed) > 0 {
		db.w.prepareAll(ctx, tx.missed)
	}
	answer()
}
