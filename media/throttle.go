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
