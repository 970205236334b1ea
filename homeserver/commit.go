package homeserver

import "sync/atomic"

// commitListeners are the parts that hear of every commit, in commit
// order, from the storage writer's goroutine (after the notifier). A part
// is added once it is built; it must catch up from its own cursor when it
// starts, so commits before it was added are not lost to it, and a
// listener must not block.
type commitListeners struct {
	fns atomic.Pointer[[]func(keys []string)]
}

// add appends fn. Adds are rare (at start), so each copies the list.
func (l *commitListeners) add(fn func(keys []string)) {
	for {
		old := l.fns.Load()
		var next []func(keys []string)
		if old != nil {
			next = append(next, *old...)
		}
		next = append(next, fn)
		if l.fns.CompareAndSwap(old, &next) {
			return
		}
	}
}

// notify calls every listener with the keys a commit touched.
func (l *commitListeners) notify(keys []string) {
	if fns := l.fns.Load(); fns != nil {
		for _, fn := range *fns {
			fn(keys)
		}
	}
}
