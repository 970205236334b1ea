package sync

import (
	"context"
	stdsync "sync"
)

// Watermark tracks which stream positions are committed and answers the
// question a reader must ask before it reads up to a position: is every
// position up to it committed? Through is that "committed through"
// position. With one writer committing in order it is simply the newest
// commit; with several writers (processes sharing one database) a position
// handed out earlier can commit later, and a reader that read up to the
// highest commit would skip it for good. Writers call Begin when they take
// a position and Commit or Abort when they are done; Commit without Begin
// is an in-order commit.
type Watermark struct {
	mu stdsync.Mutex // guards everything below
	// through: every position up to it is committed or aborted.
	through int64
	// high is the highest committed position.
	high int64
	// inflight holds positions begun and not yet committed or aborted.
	inflight map[int64]struct{}
	// waiters wait for through to reach a position.
	waiters []watermarkWaiter
}

type watermarkWaiter struct {
	pos int64
	ch  chan struct{}
}

// NewWatermark starts with everything up to start committed.
func NewWatermark(start int64) *Watermark {
	return &Watermark{through: start, high: start, inflight: make(map[int64]struct{})}
}

// Begin records that a writer took pos and will commit or abort it. A pos
// at or below Through is already settled and is ignored.
func (w *Watermark) Begin(pos int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if pos > w.through {
		w.inflight[pos] = struct{}{}
	}
}

// Commit records pos as committed and returns the new Through.
func (w *Watermark) Commit(pos int64) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.inflight, pos)
	w.high = max(w.high, pos)
	return w.advanceLocked()
}

// Abort records that pos will never commit and returns the new Through.
func (w *Watermark) Abort(pos int64) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.inflight, pos)
	return w.advanceLocked()
}

// Through returns the committed-through position.
func (w *Watermark) Through() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.through
}

// High returns the highest committed position (at or above Through).
func (w *Watermark) High() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.high
}

// Wait returns once Through reaches pos, or with ctx's error.
func (w *Watermark) Wait(ctx context.Context, pos int64) error {
	w.mu.Lock()
	if w.through >= pos {
		w.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	w.waiters = append(w.waiters, watermarkWaiter{pos, ch})
	w.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		w.mu.Lock()
		for i, ww := range w.waiters {
			if ww.ch == ch {
				w.waiters = append(w.waiters[:i], w.waiters[i+1:]...)
				break
			}
		}
		w.mu.Unlock()
		return ctx.Err()
	}
}

// advanceLocked moves through as far as the in-flight positions allow and
// releases the waiters it passed. It never moves backwards.
func (w *Watermark) advanceLocked() int64 {
	next := w.high
	for p := range w.inflight {
		next = min(next, p-1)
	}
	if next > w.through {
		w.through = next
	}
	kept := w.waiters[:0]
	for _, ww := range w.waiters {
		if ww.pos <= w.through {
			close(ww.ch)
		} else {
			kept = append(kept, ww)
		}
	}
	w.waiters = kept
	return w.through
}
