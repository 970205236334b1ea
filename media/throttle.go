package media

import "sync/atomic"

// Throttle lets an event through at most once per interval, for example
// keyframe requests (PLI, RFC 4585 section 6.3.1; FIR, RFC 5104 section
// 4.3.1) forwarded to a publisher. It is safe for concurrent use and does
// not allocate.
type Throttle struct {
	interval int64
	last     atomic.Int64
}

// NewThrottle returns a Throttle with the given interval in nanoseconds.
func NewThrottle(intervalNanos int64) *Throttle {
	return &Throttle{interval: intervalNanos}
}

// Satisfied records that what the last allowed event asked for has
// happened (a requested key frame arrived): the next event may go through
// guard nanoseconds after from (the time of the answer, or of the event
// answered), sooner than the interval would allow. It never delays the
// next event.
func (t *Throttle) Satisfied(from, guard int64) {
	next := from + guard - t.interval
	for {
		last := t.last.Load()
		if last == 0 || next >= last || t.last.CompareAndSwap(last, next) {
			return
		}
	}
}

// Allow reports whether an event at now (unix nanoseconds) may go through,
// and if so records it.
func (t *Throttle) Allow(now int64) bool {
	for {
		last := t.last.Load()
		if last != 0 && now-last < t.interval {
			return false
		}
		if t.last.CompareAndSwap(last, now) {
			return true
		}
	}
}
