package homeserver

import "testing"

func TestLocalNotifierWakesOnlyItsKeys(t *testing.T) {
	n := newLocalNotifier(10)
	pos, alice, cancelA := n.Listen([]string{"@alice:x", "!room1:x"})
	defer cancelA()
	_, bob, cancelB := n.Listen([]string{"@bob:x", "!room2:x"})
	defer cancelB()
	if pos != 10 {
		t.Fatalf("start position %d", pos)
	}
	n.Notify(11, "!room1:x", keyMembers("!room1:x"))
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
	if n.Position() != 11 {
		t.Fatalf("position %d", n.Position())
	}
	// Typing has no position: it wakes but records nothing.
	n.Notify(0, "!room2:x")
	select {
	case <-bob:
	default:
		t.Fatal("bob not woken by typing in his room")
	}
	if got := n.LastFor("!room2:x"); got != 10 {
		t.Fatalf("typing recorded a position: %d", got)
	}
	// Cancelled listeners are forgotten.
	cancelA()
	cancelB()
	if len(n.waiters) != 0 {
		t.Fatalf("%d keys still have waiters", len(n.waiters))
	}
}
