package homeserver

import (
	"sync"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

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
	// LastFor returns the last position notified for key, or the position
	// the notifier started at if key was not notified since: a request
	// whose token is at or past it has nothing new under that key, and
	// /sync skips the query.
	LastFor(key string) int64
}

// The keys are storage's (see storage/notify.go): room and user IDs, which
// wake waiters, and prefixed keys that /sync reads LastFor of to skip
// queries with nothing new.
var (
	keyAccountData = storage.KeyAccountData
	keyToDevice    = storage.KeyToDevice
	keyMembers     = storage.KeyMembers
)

const keyDeviceLists = storage.KeyDeviceLists

type localNotifier struct {
	mu   sync.Mutex // guards pos, base, last and waiters
	pos  int64
	base int64
	// last maps a key to the last position notified for it.
	last map[string]int64
	// waiters maps a key to the channels of requests waiting on it.
	waiters map[string]map[*waiter]struct{}
}

type waiter struct {
	ch   chan struct{}
	keys []string
	done bool
}

// newLocalNotifier starts at base, the highest committed position.
func newLocalNotifier(base int64) *localNotifier {
	return &localNotifier{pos: base, base: base, last: make(map[string]int64), waiters: make(map[string]map[*waiter]struct{})}
}

// start sets the position the notifier starts from.
func (n *localNotifier) start(pos int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pos, n.base = max(n.pos, pos), max(n.base, pos)
}

func (n *localNotifier) Notify(pos int64, keys ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if pos > n.pos {
		n.pos = pos
	}
	for _, k := range keys {
		if pos > n.last[k] {
			n.last[k] = pos
		}
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

func (n *localNotifier) LastFor(key string) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if p, ok := n.last[key]; ok {
		return p
	}
	return n.base
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
