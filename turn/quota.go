package turn

import (
	"net/netip"
	"sync"
	"time"
)

// quotas counts allocations per user and in total (RFC 8656 §7.2 step 7:
// quotas are per username, not per client address).
type quotas struct {
	userMax, totalMax int

	mu     sync.Mutex
	byUser map[string]int // guarded by mu
	total  int            // guarded by mu
}

func newQuotas(userMax, totalMax int) *quotas {
	return &quotas{userMax: userMax, totalMax: totalMax, byUser: make(map[string]int)}
}

// check reports whether user may open one more allocation: 0 if so,
// 1 if the user quota is reached, 2 if the total quota is.
func (q *quotas) check(user string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.checkLocked(user)
}

func (q *quotas) checkLocked(user string) int {
	if q.total >= q.totalMax {
		return 2
	}
	if q.byUser[user] >= q.userMax {
		return 1
	}
	return 0
}

// acquire takes one allocation for user if the quotas allow it.
func (q *quotas) acquire(user string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.checkLocked(user) != 0 {
		return false
	}
	q.byUser[user]++
	q.total++
	return true
}

func (q *quotas) release(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n := q.byUser[user]; n <= 1 {
		delete(q.byUser, user)
	} else {
		q.byUser[user] = n - 1
	}
	q.total--
}

func (q *quotas) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.total
}

// bucket is a token bucket in bytes (or requests). Each allocation has one
// per direction, so its mutex is uncontended in practice.
type bucket struct {
	rate, burst float64 // per second; capacity

	mu     sync.Mutex
	tokens float64 // guarded by mu
	last   int64   // unix nanoseconds of the last refill; guarded by mu
}

func newBucket(rate, burst float64, now time.Time) *bucket {
	return &bucket{rate: rate, burst: burst, tokens: burst, last: now.UnixNano()}
}

func (b *bucket) refillLocked(now int64) {
	if dt := now - b.last; dt > 0 {
		b.tokens += float64(dt) * b.rate / 1e9
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
		b.last = now
	}
}

// allow takes n tokens if there are that many.
func (b *bucket) allow(n int, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now.UnixNano())
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}

// take takes n tokens, going into debt if needed, and returns how long the
// caller should wait for the debt to be repaid.
func (b *bucket) take(n int, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now.UnixNano())
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * 1e9)
}

// full reports whether the bucket has refilled completely (it is idle).
func (b *bucket) full(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now.UnixNano())
	return b.tokens >= b.burst
}

// ipLimiter rate-limits unauthenticated requests per source IP. It keeps at
// most maxIPLimiterEntries buckets and forgets idle ones.
type ipLimiter struct {
	rate, burst float64
	now         func() time.Time

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket // guarded by mu
	lastSweep time.Time              // guarded by mu
}

const maxIPLimiterEntries = 1 << 16

func newIPLimiter(rate float64, now func() time.Time) *ipLimiter {
	burst := rate
	if burst < 1 {
		burst = 1
	}
	return &ipLimiter{rate: rate, burst: burst, now: now, buckets: make(map[netip.Addr]*bucket)}
}

// allow reports whether ip may send one more request now. When the table
// is full of active sources, new sources are refused (fail closed).
func (l *ipLimiter) allow(ip netip.Addr) bool {
	now := l.now()
	ip = ip.WithZone("").Unmap()
	l.mu.Lock()
	b, ok := l.buckets[ip]
	if !ok {
		if len(l.buckets) >= maxIPLimiterEntries || now.Sub(l.lastSweep) > time.Minute {
			for a, old := range l.buckets {
				if old.full(now) {
					delete(l.buckets, a)
				}
			}
			l.lastSweep = now
		}
		if len(l.buckets) >= maxIPLimiterEntries {
			l.mu.Unlock()
			return false
		}
		b = newBucket(l.rate, l.burst, now)
		l.buckets[ip] = b
	}
	l.mu.Unlock()
	return b.allow(1, now)
}
