package clock

import (
	"sync"
	"time"
)

// Fake is a clock that moves only when Advance or Set is called. Timers
// and tickers fire, in deadline order, during the Advance that reaches
// their deadline; AfterFunc functions run in their own goroutine, as with
// the real clock. The zero value is not usable; call NewFake.
type Fake struct {
	mu sync.Mutex // guards now, timers and seq
	// now is the fake current time.
	now time.Time
	// timers are the active timers and tickers.
	timers map[*fakeTimer]struct{}
	// seq orders timers with equal deadlines by creation.
	seq uint64
}

// NewFake returns a fake clock reading start.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start, timers: make(map[*fakeTimer]struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the clock forward by d (d >= 0) and fires what fell due.
func (f *Fake) Advance(d time.Duration) {
	if d < 0 {
		d = 0
	}
	f.mu.Lock()
	target := f.now.Add(d)
	f.mu.Unlock()
	f.Set(target)
}

// Set moves the clock to t (never backwards) and fires, one by one in
// deadline order, every timer due at or before t. A ticker fires once per
// period passed; a tick the reader has not taken yet is dropped, as with
// time.Ticker.
func (f *Fake) Set(t time.Time) {
	for {
		f.mu.Lock()
		var next *fakeTimer
		for ft := range f.timers {
			if ft.when.After(t) {
				continue
			}
			if next == nil || ft.when.Before(next.when) || ft.when.Equal(next.when) && ft.seq < next.seq {
				next = ft
			}
		}
		if next == nil {
			if t.After(f.now) {
				f.now = t
			}
			f.mu.Unlock()
			return
		}
		if next.when.After(f.now) {
			f.now = next.when
		}
		fire := f.now
		fn := next.fn
		if next.period > 0 {
			next.when = next.when.Add(next.period)
		} else {
			delete(f.timers, next)
		}
		f.mu.Unlock()
		if fn != nil {
			go fn()
		} else {
			select {
			case next.c <- fire:
			default:
			}
		}
	}
}

// Pending returns the number of active timers and tickers: a test polls
// it to know that the code under test is waiting before it advances.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// NewTimer returns a fake timer firing d after the fake now.
func (f *Fake) NewTimer(d time.Duration) Timer {
	return f.add(&fakeTimer{c: make(chan time.Time, 1)}, d)
}

// AfterFunc calls fn in its own goroutine once the fake clock passes d.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	return f.add(&fakeTimer{fn: fn}, d)
}

// NewTicker returns a fake ticker with period d (d > 0, as time.NewTicker
// requires).
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	return fakeTicker{f.add(&fakeTimer{c: make(chan time.Time, 1), period: d}, d)}
}

// fakeTicker gives a periodic fakeTimer time.Ticker's method set.
type fakeTicker struct{ t *fakeTimer }

func (k fakeTicker) C() <-chan time.Time { return k.t.c }
func (k fakeTicker) Stop()               { k.t.Stop() }

func (k fakeTicker) Reset(d time.Duration) {
	if d <= 0 {
		panic("clock: non-positive interval for Ticker.Reset")
	}
	k.t.Reset(d)
}

func (f *Fake) add(ft *fakeTimer, d time.Duration) *fakeTimer {
	ft.f = f
	f.mu.Lock()
	f.seq++
	ft.seq = f.seq
	ft.when = f.now.Add(d)
	f.timers[ft] = struct{}{}
	f.mu.Unlock()
	if d <= 0 {
		f.Set(f.Now()) // due now
	}
	return ft
}

// fakeTimer is a Fake's timer, ticker or delayed call.
type fakeTimer struct {
	f      *Fake
	c      chan time.Time
	fn     func()
	period time.Duration
	// when and seq are guarded by f.mu.
	when time.Time
	seq  uint64
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	_, active := t.f.timers[t]
	delete(t.f.timers, t)
	return active
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	_, active := t.f.timers[t]
	t.when = t.f.now.Add(d)
	if t.period > 0 {
		t.period = d
	}
	t.f.timers[t] = struct{}{}
	t.f.mu.Unlock()
	if d <= 0 {
		t.f.Set(t.f.Now())
	}
	return active
}
