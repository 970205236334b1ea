package rooms

import (
	"context"
	"encoding/json"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// placement is where an allowed event goes in its room: the state before
// it, the room's state and frontier after it.
type placement struct {
	pdu gomatrixserverlib.PDU
	row storage.Event
	// local: built here; it extends the room's whole frontier from its
	// current state (storage.Tx.AppendEvent).
	local bool
	// before is the state before the event; beforeID its snapshot when
	// one exists (remote events).
	before   storage.StateMap
	beforeID int64
	// current is the room's state after the event and extremities its
	// forward extremities.
	current     storage.StateMap
	extremities []string
}

// row is the storage row of pdu, received now.
func (w *Writer) row(pdu gomatrixserverlib.PDU) storage.Event {
	return EventRow(pdu, w.r.nowMS())
}

// store is what local and remote events share once they are allowed: the
// unsigned prev_content of a state event, the row, the state snapshot,
// the new current state and extremities, the caller's AfterAppend hook,
// and the writer's view of the room.
func (w *Writer) store(ctx context.Context, pl placement) (storage.Event, error) {
	pdu, ev := pl.pdu, pl.row
	id := pdu.EventID()
	sk := pdu.StateKey()
	var membership string
	if sk != nil {
		// Spec: Client-Server API, "unsigned": prev_content and
		// replaces_state of a state event name what it replaced.
		if prevID, ok := pl.before[storage.StateKey{Type: pdu.Type(), StateKey: *sk}]; ok {
			prev, err := w.l.PDU(ctx, prevID)
			if err != nil && pl.local {
				return storage.Event{}, err
			}
			if err == nil {
				ev.UnsignedExtra, _ = json.Marshal(map[string]any{
					"prev_content":   json.RawMessage(prev.Content()),
					"replaces_state": prevID,
					"prev_sender":    string(prev.SenderID()),
				})
			}
		}
		if pdu.Type() == spec.MRoomMember {
			membership, _ = pdu.Membership()
		}
	}
	var pos int64
	var err error
	if pl.local {
		pos, err = w.tx.AppendEvent(ctx, storage.NewEvent{Event: ev, Before: pl.before, Membership: membership})
	} else {
		memberships := map[string]string{}
		if membership != "" {
			memberships[id] = membership
		}
		pos, err = w.tx.StoreRemoteEvent(ctx, storage.RemoteEvent{
			Event: ev, Before: pl.before, BeforeID: pl.beforeID, Current: pl.current,
			Extremities: pl.extremities, Depth: pdu.Depth(), Memberships: memberships,
		})
	}
	if err != nil {
		return storage.Event{}, err
	}
	ev.Pos = pos
	current := sk != nil && pl.current[storage.StateKey{Type: pdu.Type(), StateKey: *sk}] == id
	if w.r.cfg.AfterAppend != nil {
		if err := w.r.cfg.AfterAppend(ctx, w.tx, Appended{Event: ev, Local: pl.local, Current: current}); err != nil {
			return storage.Event{}, err
		}
	}
	w.l.Add(pdu)
	if !pl.local {
		// The store moved the frontier and may have resolved the state.
		room, err := w.tx.Room(ctx, w.room.RoomID)
		if err != nil {
			return storage.Event{}, err
		}
		w.room, w.state = room, pl.current
	} else if sk != nil {
		w.state = pl.current
		// The snapshot ID is assigned by AppendEvent; re-read the room row.
		room, err := w.tx.Room(ctx, w.room.RoomID)
		if err != nil {
			return storage.Event{}, err
		}
		w.room.CurrentSnapshot = room.CurrentSnapshot
		w.room.Extremities, w.room.Depth = pl.extremities, pdu.Depth()
	} else {
		w.room.Extremities, w.room.Depth = pl.extremities, pdu.Depth()
	}
	w.last = pos
	return ev, nil
}
