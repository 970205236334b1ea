// Package clock is the time source of Switchboard's long-lived parts: the
// current time, timers, tickers and delayed calls behind one interface, so
// that tests hold time in their hands instead of waiting for it.
//
// Real is the wall clock (package time). Fake is a clock that only moves
// when a test calls Advance: a /sync long-poll of 30 s, a presence idle
// timeout of 5 min or a queue backoff can be driven to their end at once
// and without sleeping.
//
// It imports nothing of ours, so every package may use it (the homeserver
// today; signalling's focus ticks later).
package clock

import "time"

// Clock tells the time and makes timers.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that sends the time on its channel once d
	// has passed.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a ticker that sends the time on its channel every
	// d (d > 0). Ticks a slow reader misses are dropped, as with
	// time.Ticker.
	NewTicker(d time.Duration) Ticker
	// AfterFunc calls f in its own goroutine once d has passed. The
	// returned timer's C is nil; Stop cancels the call.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a one-shot timer (time.Timer's methods).
type Timer interface {
	// C returns the channel the time is sent on (nil for AfterFunc).
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
	// Reset changes the timer to fire after d; it reports whether the
	// timer had been active.
	Reset(d time.Duration) bool
}

// Ticker is a periodic timer (time.Ticker's methods).
type Ticker interface {
	C() <-chan time.Time
	Stop()
	Reset(d time.Duration)
}

// Real returns the wall clock.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return realTimer{time.AfterFunc(d, f)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }
func (t realTicker) C() <-chan time.Time       { return t.t.C }
func (t realTicker) Stop()                     { t.t.Stop() }
func (t realTicker) Reset(d time.Duration)     { t.t.Reset(d) }

type realTicker struct{ t *time.Ticker }

// WithNow returns a clock whose Now is now and whose timers are the wall
// clock's. It serves callers that only ever had a Now function to give
// (homeserver.Config.Now); tests that want timers under their control use
// Fake.
func WithNow(now func() time.Time) Clock { return nowClock{now} }

type nowClock struct{ now func() time.Time }

func (c nowClock) Now() time.Time                          { return c.now() }
func (nowClock) NewTimer(d time.Duration) Timer            { return Real().NewTimer(d) }
func (nowClock) NewTicker(d time.Duration) Ticker          { return Real().NewTicker(d) }
func (nowClock) AfterFunc(d time.Duration, f func()) Timer { return Real().AfterFunc(d, f) }
