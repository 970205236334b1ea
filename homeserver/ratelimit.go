package homeserver

import (
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter keeps one token bucket per key (user ID or client IP) and answers
// 429 M_LIMIT_EXCEEDED with retry_after_ms when a bucket is empty.
type limiter struct {
	perSec float64
	burst  int
	now    func() time.Time

	mu        sync.Mutex // guards buckets and lastSweep
	buckets   map[string]*rate.Limiter
	lastSweep time.Time
}

func newLimiter(perSec float64, burst int, now func() time.Time) *limiter {
	return &limiter{perSec: perSec, burst: burst, now: now, buckets: make(map[string]*rate.Limiter)}
}

// allow takes a token for key, or returns the 429 error to send.
func (l *limiter) allow(key string) *MatrixError {
	if l == nil {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	if now.Sub(l.lastSweep) > time.Minute {
		// Before the lookup: a sweep after it would drop the bucket just
		// made, full, and forget the token taken from it.
		l.sweepLocked(now)
	}
	b, ok := l.buckets[key]
	if !ok {
		b = rate.NewLimiter(rate.Limit(l.perSec), l.burst)
		l.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	l.mu.Unlock()
	if !r.OK() {
		return l.exceeded(time.Second)
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return l.exceeded(d)
	}
	return nil
}

func (l *limiter) exceeded(d time.Duration) *MatrixError {
	e := merr(http.StatusTooManyRequests, "M_LIMIT_EXCEEDED", "Too many requests; retry in %d ms", d.Milliseconds()+1)
	e.RetryAfterMS = d.Milliseconds() + 1
	return e
}

// sweepLocked forgets buckets that are full again, so the map does not grow
// with every client ever seen.
func (l *limiter) sweepLocked(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
}
