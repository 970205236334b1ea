package sync

import (
	"context"
	"testing"
	"time"
)

// TestWatermarkOutOfOrder: a position committed above one still in
// flight does not move the committed-through position past the gap; the
// late commit (or an abort) closes it, and Through never moves back.
func TestWatermarkOutOfOrder(t *testing.T) {
	w := NewWatermark(10)
	w.Begin(11)
	w.Begin(12)
	w.Begin(13)
	if got := w.Commit(12); got != 10 {
		t.Fatalf("12 committed with 11 in flight: through %d, want 10", got)
	}
	if w.High() != 12 {
		t.Fatalf("high %d, want 12", w.High())
	}
	if got := w.Commit(11); got != 12 {
		t.Fatalf("11 committed: through %d, want 12 (13 in flight)", got)
	}
	if got := w.Abort(13); got != 12 {
		t.Fatalf("13 aborted: through %d, want 12", got)
	}
	if got := w.Commit(14); got != 14 {
		t.Fatalf("14 committed in order: through %d, want 14", got)
	}
	w.Begin(5) // settled long ago: ignored
	if got := w.Commit(15); got != 15 {
		t.Fatalf("through %d after a stale Begin, want 15", got)
	}
}

// TestWatermarkWait: a reader waiting for a position is released when the
// watermark reaches it, not when a higher position commits first.
func TestWatermarkWait(t *testing.T) {
	w := NewWatermark(0)
	w.Begin(1)
	w.Begin(2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Wait(ctx, 2) }()
	w.Commit(2)
	select {
	case err := <-done:
		t.Fatalf("Wait(2) returned (%v) with 1 still in flight", err)
	default:
	}
	w.Commit(1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithCancel(context.Background())
	cancelShort()
	if err := w.Wait(short, 99); err == nil {
		t.Fatal("Wait past the watermark returned without error on a cancelled context")
	}
	if err := w.Wait(context.Background(), 2); err != nil {
		t.Fatalf("Wait for a committed position: %v", err)
	}
}

// TestLocalNotifierWakesOnWatermark: a commit above a position in flight
// wakes its waiters only once the watermark passes it, and Listen hands
// out the committed-through position, never the highest.
func TestLocalNotifierWakesOnWatermark(t *testing.T) {
	n := NewLocalNotifier(10)
	n.Watermark().Begin(11)
	pos, woken, cancel := n.Listen([]string{"!room:x"})
	defer cancel()
	n.Notify(12, "!room:x")
	select {
	case <-woken:
		t.Fatal("woken by 12 while 11 is in flight")
	default:
	}
	if pos != 10 || n.Position() != 10 {
		t.Fatalf("positions %d/%d, want 10 (11 in flight)", pos, n.Position())
	}
	if n.LastFor("!room:x") != 12 {
		t.Fatalf("LastFor %d, want 12", n.LastFor("!room:x"))
	}
	n.Notify(11, "!other:x")
	select {
	case <-woken:
	default:
		t.Fatal("not woken once the watermark passed 12")
	}
	if n.Position() != 12 {
		t.Fatalf("position %d, want 12", n.Position())
	}
	// An abort releases held wake-ups too.
	n.Watermark().Begin(13)
	_, woken, cancel2 := n.Listen([]string{"!room:x"})
	defer cancel2()
	n.Notify(14, "!room:x")
	n.Abort(13)
	select {
	case <-woken:
	default:
		t.Fatal("not woken after 13 was aborted")
	}
}

// TestLocalNotifierWakesOnlyItsKeys: a commit wakes the waiters of its
// keys and nobody else; typing (position 0) wakes without recording.
func TestLocalNotifierWakesOnlyItsKeys(t *testing.T) {
	n := NewLocalNotifier(10)
	pos, alice, cancelA := n.Listen([]string{"@alice:x", "!room1:x"})
	defer cancelA()
	_, bob, cancelB := n.Listen([]string{"@bob:x", "!room2:x"})
	defer cancelB()
	if pos != 10 {
		t.Fatalf("start position %d", pos)
	}
	n.Notify(11, "!room1:x", "mem|!room1:x")
	select {
	case <-alice:
	default:
		t.Fatal("alice not woken by her room")
	}
	select {
	case <-bob:
		t.Fatal("bob woken by a room he is not in")
	default:
	}
	if got := n.LastFor("!room1:x"); got != 11 {
		t.Fatalf("LastFor(room1) = %d", got)
	}
	// Never-notified keys report the start position, so a token from
	// before the start still queries.
	if got := n.LastFor("!room2:x"); got != 10 {
		t.Fatalf("LastFor(room2) = %d", got)
	}
	n.Notify(0, "!room2:x")
	select {
	case <-bob:
	default:
		t.Fatal("bob not woken by typing in his room")
	}
	if got := n.LastFor("!room2:x"); got != 10 {
		t.Fatalf("typing recorded a position: %d", got)
	}
	cancelA()
	cancelB()
	if n.Keys() != 0 {
		t.Fatalf("%d keys still have waiters", n.Keys())
	}
}
