package sync

import (
	"slices"
	stdsync "sync"
)

// Notifier wakes long-polling /sync requests when something they may want
// was committed. Waiters listen on keys, room IDs ("!...") and user IDs
// ("@..."); a commit notifies the keys it concerns (storage/notify.go), so
// that a message wakes the members of its room and nobody else. One
// process uses NewLocalNotifier; a cluster swaps in one that also carries
// notifications between processes.
type Notifier interface {
	// Start tells the notifier the highest committed position once
	// storage is open (before any request listens); it never moves a
	// position back.
	Start(pos int64)
	// Notify records that position pos is committed (pos 0: no new
	// position, e.g. typing) and wakes the waiters on keys once every
	// position up to pos is committed.
	Notify(pos int64, keys ...string)
	// Listen returns the committed-through position and a channel closed
	// at the next wake-up of one of keys. Call cancel when done waiting.
	Listen(keys []string) (pos int64, woken <-chan struct{}, cancel func())
	// Position returns the committed-through position: a reader may read
	// every stream up to it.
	Position() int64
	// LastFor returns the last position notified for key, or the position
	// the notifier started at if key was not notified since: a request
	// whose token is at or past it has nothing new under that key, and a
	// stream skips its query.
	LastFor(key string) int64
}

// LocalNotifier is the Notifier of one process. Its positions go through
// a Watermark: a commit that lands above a position still in flight
// (Watermark.Begin) wakes its waiters only once the watermark passes it.
type LocalNotifier struct {
	wm *Watermark

	mu stdsync.Mutex // guards base, last, waiters and held
	// base is the position the notifier started at.
	base int64
	// last maps a key to the last position notified for it.
	last map[string]int64
	// waiters maps a key to the requests waiting on it.
	waiters map[string]map[*waiter]struct{}
	// held are notifications above the watermark, in no order.
	held []heldNotify
}

type heldNotify struct {
	pos  int64
	keys []string
}

type waiter struct {
	ch   chan struct{}
	keys []string
	done bool
}

// NewLocalNotifier starts at base, the highest committed position.
func NewLocalNotifier(base int64) *LocalNotifier {
	return &LocalNotifier{wm: NewWatermark(base), base: base, last: make(map[string]int64),
		waiters: make(map[string]map[*waiter]struct{})}
}

// Start implements Notifier.
func (n *LocalNotifier) Start(pos int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.base = max(n.base, pos)
	n.wm.Commit(pos) // after base, as Notify moves LastFor first
}

// Watermark returns the notifier's committed-through tracker, for writers
// that take positions out of order.
func (n *LocalNotifier) Watermark() *Watermark { return n.wm }

// Notify implements Notifier.
//
// LastFor of keys moves before the committed-through position does, under
// mu: a reader that sees Position at or past pos must also see LastFor at
// pos, or it takes the key for quiet and answers a token past pos without
// what was written there (a /sync that lost the message for good).
func (n *LocalNotifier) Notify(pos int64, keys ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range keys {
		if pos > n.last[k] {
			n.last[k] = pos
		}
	}
	var through int64
	if pos > 0 {
		through = n.wm.Commit(pos) // lock order: mu, then the watermark's
	}
	if pos > through {
		n.held = append(n.held, heldNotify{pos, slices.Clone(keys)})
	} else {
		n.wakeKeysLocked(keys)
	}
	if pos > 0 && len(n.held) > 0 {
		n.releaseLocked(through)
	}
}

// Abort records that a position taken with Watermark().Begin will not
// commit, and wakes what waited behind it.
func (n *LocalNotifier) Abort(pos int64) {
	through := n.wm.Abort(pos)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.releaseLocked(through)
}

// releaseLocked wakes the held notifications at or below through.
func (n *LocalNotifier) releaseLocked(through int64) {
	kept := n.held[:0]
	for _, h := range n.held {
		if h.pos <= through {
			n.wakeKeysLocked(h.keys)
		} else {
			kept = append(kept, h)
		}
	}
	n.held = kept
}

func (n *LocalNotifier) wakeKeysLocked(keys []string) {
	for _, k := range keys {
		for w := range n.waiters[k] {
			n.wakeLocked(w)
		}
	}
}

// Listen implements Notifier.
func (n *LocalNotifier) Listen(keys []string) (int64, <-chan struct{}, func()) {
	w := &waiter{ch: make(chan struct{}), keys: keys}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range keys {
		set := n.waiters[k]
		if set == nil {
			set = make(map[*waiter]struct{})
			n.waiters[k] = set
		}
		set[w] = struct{}{}
	}
	// Read the watermark under mu: a commit after this wakes w.
	return n.wm.Through(), w.ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.removeLocked(w)
	}
}

// WakeAll wakes every waiting request: a cluster notifier calls it when
// it learns that positions were committed without learning their keys.
func (n *LocalNotifier) WakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, set := range n.waiters {
		for w := range set {
			n.wakeLocked(w)
		}
	}
}

// LastFor implements Notifier.
func (n *LocalNotifier) LastFor(key string) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if p, ok := n.last[key]; ok {
		return p
	}
	return n.base
}

// Position implements Notifier.
func (n *LocalNotifier) Position() int64 { return n.wm.Through() }

// Waiting returns the number of requests waiting on key.
func (n *LocalNotifier) Waiting(key string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.waiters[key])
}

// Keys returns the number of keys that have waiters.
func (n *LocalNotifier) Keys() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.waiters)
}

// wakeLocked closes a waiter's channel once and unregisters it.
func (n *LocalNotifier) wakeLocked(w *waiter) {
	if !w.done {
		w.done = true
		close(w.ch)
	}
	n.removeLocked(w)
}

func (n *LocalNotifier) removeLocked(w *waiter) {
	for _, k := range w.keys {
		if set := n.waiters[k]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(n.waiters, k)
			}
		}
	}
}
