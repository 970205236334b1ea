package homeserver

import "sync"

// Notifier wakes long-polling /sync requests when something they may want
// was written. One process uses localNotifier; a cluster swaps in one that
// also carries positions between processes.
type Notifier interface {
	// Advance records that every stream position up to pos is committed.
	Advance(pos int64)
	// Poke wakes waiters without a new position (typing notifications).
	Poke()
	// Changed returns the highest committed position and a channel that is
	// closed at the next Advance or Poke.
	Changed() (int64, <-chan struct{})
}

type localNotifier struct {
	mu  sync.Mutex // guards pos and ch
	pos int64
	ch  chan struct{}
}

func newLocalNotifier() *localNotifier { return &localNotifier{ch: make(chan struct{})} }

func (n *localNotifier) Advance(pos int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if pos > n.pos {
		n.pos = pos
	}
	n.wakeLocked()
}

func (n *localNotifier) Poke() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.wakeLocked()
}

func (n *localNotifier) wakeLocked() {
	close(n.ch)
	n.ch = make(chan struct{})
}

func (n *localNotifier) Changed() (int64, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pos, n.ch
}
