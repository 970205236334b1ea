package clock

import (
	"testing"
	"time"
)

var start = time.Unix(1_800_000_000, 0)

func received(c <-chan time.Time) (time.Time, bool) {
	select {
	case t := <-c:
		return t, true
	default:
		return time.Time{}, false
	}
}

func TestFakeTimerFiresAtDeadline(t *testing.T) {
	f := NewFake(start)
	tm := f.NewTimer(30 * time.Second)
	if f.Pending() != 1 {
		t.Fatalf("pending %d, want 1", f.Pending())
	}
	f.Advance(29 * time.Second)
	if _, ok := received(tm.C()); ok {
		t.Fatal("timer fired before its deadline")
	}
	f.Advance(time.Second)
	at, ok := received(tm.C())
	if !ok || !at.Equal(start.Add(30*time.Second)) {
		t.Fatalf("fired %v at %v, want at %v", ok, at, start.Add(30*time.Second))
	}
	if f.Pending() != 0 {
		t.Fatalf("pending %d after firing, want 0", f.Pending())
	}
	if tm.Stop() {
		t.Fatal("Stop of a fired timer reported it active")
	}
}

func TestFakeTimerStopAndReset(t *testing.T) {
	f := NewFake(start)
	tm := f.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop of an active timer reported it inactive")
	}
	f.Advance(time.Hour)
	if _, ok := received(tm.C()); ok {
		t.Fatal("a stopped timer fired")
	}
	if tm.Reset(time.Minute) {
		t.Fatal("Reset of a stopped timer reported it active")
	}
	f.Advance(time.Minute)
	if _, ok := received(tm.C()); !ok {
		t.Fatal("a reset timer did not fire")
	}
}

func TestFakeOrderAndNow(t *testing.T) {
	f := NewFake(start)
	a, b := f.NewTimer(2*time.Second), f.NewTimer(time.Second)
	var fired []time.Time
	done := make(chan struct{})
	f.AfterFunc(1500*time.Millisecond, func() { close(done) })
	f.Advance(5 * time.Second)
	for _, c := range []<-chan time.Time{b.C(), a.C()} {
		at, ok := received(c)
		if !ok {
			t.Fatal("a due timer did not fire")
		}
		fired = append(fired, at)
	}
	if !fired[0].Before(fired[1]) {
		t.Fatalf("timers fired at %v, want deadline order", fired)
	}
	<-done // AfterFunc ran (the test's deadline bounds this)
	if got := f.Now(); !got.Equal(start.Add(5 * time.Second)) {
		t.Fatalf("now %v, want %v", got, start.Add(5*time.Second))
	}
	f.Set(start) // never backwards
	if got := f.Now(); !got.Equal(start.Add(5 * time.Second)) {
		t.Fatalf("Set moved the clock back to %v", got)
	}
}

func TestFakeTickerDropsMissedTicks(t *testing.T) {
	f := NewFake(start)
	tk := f.NewTicker(10 * time.Second)
	f.Advance(35 * time.Second) // three periods, one slot
	at, ok := received(tk.C())
	if !ok || !at.Equal(start.Add(10*time.Second)) {
		t.Fatalf("first tick %v %v, want at +10s (later ones dropped)", ok, at)
	}
	if _, ok := received(tk.C()); ok {
		t.Fatal("more than one tick buffered")
	}
	f.Advance(5 * time.Second)
	if at, ok := received(tk.C()); !ok || !at.Equal(start.Add(40*time.Second)) {
		t.Fatalf("tick %v %v, want at +40s", ok, at)
	}
	tk.Stop()
	f.Advance(time.Minute)
	if _, ok := received(tk.C()); ok {
		t.Fatal("a stopped ticker ticked")
	}
}

func TestRealAndWithNow(t *testing.T) {
	r := Real()
	tm := r.NewTimer(time.Millisecond)
	<-tm.C()
	fixed := start
	c := WithNow(func() time.Time { return fixed })
	if !c.Now().Equal(start) {
		t.Fatalf("WithNow's Now = %v", c.Now())
	}
	done := make(chan struct{})
	c.AfterFunc(time.Millisecond, func() { close(done) })
	<-done
	tk := c.NewTicker(time.Millisecond)
	<-tk.C()
	tk.Stop()
}
