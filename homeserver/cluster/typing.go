package cluster

import (
	stdsync "sync"
	"time"

	hsync "github.com/switchboard-chat/switchboard/homeserver/sync"
	"github.com/switchboard-chat/switchboard/internal/clock"
)

// Ephemeral is a node's typing and presence (hsync.Ephemeral). Typing is
// shared: a change made on this node is applied here and published on the
// wake-up channel before the wake-up of its room, and every node applies
// the changes it hears of. While Redis is down each node keeps its own
// (per-node fallback); a stale entry ends with its timeout. Presence is
// still this node's own (hsync.LocalEphemeral).
//
// Typing serials are Lamport clocks: a node's serial moves past every
// serial it hears of, so a /sync token made on one node compares sensibly
// on another once that node has heard the changes the token covered.
type Ephemeral struct {
	*hsync.LocalEphemeral // presence
	n                     *Notifier
	clock                 clock.Clock

	mu stdsync.Mutex // guards typing
	// typing's serial is above every change applied here.
	typing hsync.TypingState
}

// Ephemeral returns the node's typing and presence, which share the
// notifier's channel: pass it as homeserver.Config.Ephemeral.
func (n *Notifier) Ephemeral() *Ephemeral { return n.eph }

func newEphemeral(n *Notifier, c clock.Clock) *Ephemeral {
	return &Ephemeral{LocalEphemeral: hsync.NewLocalEphemeral(c), n: n, clock: c}
}

// SetTyping implements hsync.Ephemeral.
func (e *Ephemeral) SetTyping(roomID, userID string, typing bool, timeout time.Duration) bool {
	e.mu.Lock()
	changed := e.applyLocked(roomID, userID, typing, timeout, 0)
	serial := e.typing.Serial()
	e.mu.Unlock()
	// Refreshes are published too: the other nodes' timeouts move along.
	e.n.enqueue(wake{Node: e.n.cfg.NodeID, Typing: &typingChange{
		Room: roomID, User: userID, Typing: typing, TimeoutMS: timeout.Milliseconds(), Serial: serial}})
	return changed
}

// heard applies another node's typing change.
func (e *Ephemeral) heard(t *typingChange) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.applyLocked(t.Room, t.User, t.Typing, time.Duration(t.TimeoutMS)*time.Millisecond, t.Serial)
}

// applyLocked records a change and reports whether it changed who types;
// seen is the serial of the node it came from (0 for this one).
func (e *Ephemeral) applyLocked(roomID, userID string, typing bool, timeout time.Duration, seen int64) bool {
	return e.typing.Set(roomID, userID, typing, e.clock.Now().Add(timeout), seen)
}

// TypingPosition implements hsync.Ephemeral.
func (e *Ephemeral) TypingPosition() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.typing.Position(e.clock.Now())
}

// TypingSince implements hsync.Ephemeral.
func (e *Ephemeral) TypingSince(roomID string, since int64) ([]string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.typing.Since(roomID, since)
}
