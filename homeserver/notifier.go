package homeserver

import "sync"

// Notifier wakes long-polling /sync requests when something they may want
// was written. Waiters listen on keys, room IDs ("!...") and user IDs
// ("@..."); a write notifies the keys it concerns, so that a message wakes
// the members of its room and nobody else. One process uses localNotifier;
// a cluster swaps in one that also carries notifications between processes.
type Notifier interface {
	// Notify records that every stream position up to pos is committed
	// (pos 0: no new position, e.g. typing) and wakes the waiters on keys.
	Notify(pos int64, keys ...string)
	// Listen returns the highest committed position and a channel closed
	// at the next Notify of one of keys. Call cancel when done waiting.
	Listen(keys []string) (pos int64, woken <-chan struct{}, cancel func())
	// Position returns the highest committed position.
	Position() int64
}

type localNotifier struct {
	mu  sync.Mutex // guards pos and waiters
	pos int64
	// waiters maps a key to the channels of requests waiting on it.
	waiters map[string]map[*waiter]struct{}
}

type waiter struct {
	ch   chan struct{}
	keys []string
	done bool
}

func newLocalNotifier() *localNotifier {
	return &localNotifier{waiters: make(map[string]map[*waiter]struct{})}
}

func (n *localNotifier) Notify(pos int64, keys ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if pos > n.pos {
		n.pos = pos
	}
	for _, k := range keys {
		for w := range n.waiters[k] {
			n.wakeLocked(w)
		}
	}
}

func (n *localNotifier) Listen(keys []string) (int64, <-chan struct{}, func()) {
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
	return n.pos, w.ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.removeLocked(w)
	}
}

func (n *localNotifier) Position() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pos
}

// wakeLocked closes a waiter's channel once and unregisters it.
func (n *localNotifier) wakeLocked(w *waiter) {
	if !w.done {
		w.done = true
		close(w.ch)
	}
	n.removeLocked(w)
}

func (n *localNotifier) removeLocked(w *waiter) {
	for _, k := range w.keys {
		if set := n.waiters[k]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(n.waiters, k)
			}
		}
	}
}
