package rooms

import (
	"context"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Outcome says what AppendRemote did with an event.
type Outcome int

const (
	// Known: the event was stored already, or it was refused (with an
	// error); nothing changed.
	Known Outcome = iota
	// Stored: the event joined the room's timeline.
	Stored
	// SoftFailed: the event passed steps 4 and 5 but the room's current
	// state refuses it; it is stored as an outlier with a soft-failed
	// verdict (softfail.go).
	SoftFailed
)

// AppendRemote appends a received PDU whose format, signatures and hash
// were checked (steps 1–3) to the room's timeline: step 4, auth against
// its own auth events; step 5, auth against the state before it, computed
// from its prev events (resolved when they fork); step 6, soft failure
// against the current state. The room's new state is the state after it
// when it extends our whole frontier, else the resolution of our current
// state and its state. Refusals: ErrRejected (the caller records the
// verdict), ErrBadEvent (prev or auth events unknown, or refused only by a
// state we guessed: not a verdict). It returns the stored row (zero when
// not Appended).
func (w *Writer) AppendRemote(ctx context.Context, pdu gomatrixserverlib.PDU) (storage.Event, Outcome, error) {
	id := pdu.EventID()
	if pdu.RoomID().String() != w.room.RoomID {
		return storage.Event{}, Known, refuse(ErrBadEvent, "event %s is for room %s, not %s", id, pdu.RoomID().String(), w.room.RoomID)
	}
	if _, err := w.tx.Event(ctx, id); err == nil {
		return storage.Event{}, Known, nil
	}
	// 4. Auth events: all known and not rejected, and they allow the event.
	if err := w.l.AllowedByOwnAuth(ctx, w.tx, pdu); err != nil {
		return storage.Event{}, Known, err
	}
	// 5. The state before the event.
	before, beforeID, guessed, err := w.stateBefore(ctx, pdu)
	if err != nil {
		return storage.Event{}, Known, err
	}
	if err := w.l.AuthAgainst(ctx, pdu, before); err != nil {
		if guessed {
			return storage.Event{}, Known, refuse(ErrBadEvent, "the state we hold before it refuses it: %v", err)
		}
		return storage.Event{}, Known, refuse(ErrRejected, "state before it refuses it: %v", err)
	}
	// 6. Soft failure.
	if failed, err := w.softFailed(ctx, pdu, before); err != nil || failed {
		if failed {
			return storage.Event{}, SoftFailed, err
		}
		return storage.Event{}, Known, err
	}
	after := before
	if sk := pdu.StateKey(); sk != nil {
		after = CloneState(before)
		after[storage.StateKey{Type: pdu.Type(), StateKey: *sk}] = id
	}
	current, ext, err := w.frontierAfter(ctx, pdu, after)
	if err != nil {
		return storage.Event{}, Known, err
	}
	ev, err := w.store(ctx, placement{
		pdu: pdu, row: w.row(pdu), before: before, beforeID: beforeID, current: current, extremities: ext,
	})
	if err != nil {
		return storage.Event{}, Known, err
	}
	return ev, Stored, w.applyRemoteRedactions(ctx, pdu, before)
}

// stateBefore works out the state before pdu from the state after its
// prev events, resolved when there are several. A prev event known
// without the state at it (from before our join, backfilled, or
// soft-failed) stands for our current state: guessed reports that, so
// that a refusal against it is not taken for a verdict. beforeID is the
// snapshot of the state when it is one prev event's state after.
func (w *Writer) stateBefore(ctx context.Context, pdu gomatrixserverlib.PDU) (storage.StateMap, int64, bool, error) {
	prevIDs := pdu.PrevEventIDs()
	prevs, err := w.tx.Events(ctx, prevIDs)
	if err != nil {
		return nil, 0, false, err
	}
	if len(prevs) != len(prevIDs) || len(prevIDs) == 0 {
		return nil, 0, false, refuse(ErrBadEvent, "missing prev events")
	}
	var sets []storage.StateMap
	var beforeID int64
	guessed := false
	for _, p := range prevs {
		if p.SnapAfter == 0 {
			sets = append(sets, w.state)
			guessed = true
			continue
		}
		st, err := w.tx.Snapshot(ctx, p.SnapAfter)
		if err != nil {
			return nil, 0, false, err
		}
		sets = append(sets, st)
		beforeID = p.SnapAfter
	}
	if len(prevs) > 1 {
		beforeID = 0
	}
	before, err := w.l.Resolve(ctx, sets)
	if err != nil {
		return nil, 0, false, fmt.Errorf("rooms: state resolution: %w", err)
	}
	return before, beforeID, guessed, nil
}

// frontierAfter is the room's current state and forward extremities once
// pdu (with the state after it) is in: its state when it extends the
// whole frontier, else the resolution of our current state and its own.
func (w *Writer) frontierAfter(ctx context.Context, pdu gomatrixserverlib.PDU, after storage.StateMap) (storage.StateMap, []string, error) {
	prevSet := map[string]bool{}
	for _, p := range pdu.PrevEventIDs() {
		prevSet[p] = true
	}
	covered := true
	ext := []string{}
	for _, x := range w.room.Extremities {
		if prevSet[x] {
			continue
		}
		covered = false
		ext = append(ext, x)
	}
	ext = append(ext, pdu.EventID())
	if covered {
		return after, ext, nil
	}
	// The new event takes part in the resolution before it is stored.
	w.l.Add(pdu)
	current, err := w.l.Resolve(ctx, []storage.StateMap{w.state, after})
	if err != nil {
		return nil, nil, fmt.Errorf("rooms: state resolution: %w", err)
	}
	return current, ext, nil
}
