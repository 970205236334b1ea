package rooms

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Event is what a local user asks to send.
type Event struct {
	Sender   string
	Type     string
	StateKey *string
	Content  json.RawMessage
	// Redacts names the target of an m.room.redaction (room versions
	// before 11; from 11 on it moves into content, redact.go).
	Redacts string
	// Txn is the client transaction the event came from, if any.
	Txn *Txn
	// StickyMS makes the event an MSC4354 sticky event for that long
	// (sticky.go); 0 for an ordinary event.
	StickyMS int64
}

// Txn is a client transaction (spec: Client-Server API, "Transaction
// identifiers").
type Txn struct {
	DeviceID string
	TxnID    string
}

// Template fills a proto event for ev on the room's current frontier and
// state (prev_events, auth_events, depth), without signing or storing it:
// the make_join / make_leave answer.
func (w *Writer) Template(ctx context.Context, ev Event) (*gomatrixserverlib.ProtoEvent, error) {
	proto, _, err := w.proto(ctx, ev)
	return proto, err
}

func (w *Writer) proto(ctx context.Context, ev Event) (*gomatrixserverlib.ProtoEvent, *gomatrixserverlib.AuthEvents, error) {
	proto := &gomatrixserverlib.ProtoEvent{
		SenderID:   ev.Sender,
		RoomID:     w.room.RoomID,
		Type:       ev.Type,
		StateKey:   ev.StateKey,
		PrevEvents: w.room.Extremities,
		Redacts:    ev.Redacts,
		Depth:      w.room.Depth + 1,
		Content:    spec.RawJSON(ev.Content),
		Version:    w.ver,
	}
	if len(w.room.Extremities) == 0 {
		proto.PrevEvents = []string{}
	}
	needed, err := gomatrixserverlib.StateNeededForProtoEvent(proto)
	if err != nil {
		return nil, nil, refuse(ErrBadEvent, "%v", err)
	}
	var pdus []gomatrixserverlib.PDU
	for _, t := range needed.Tuples() {
		id, ok := w.state[storage.StateKey{Type: t.EventType, StateKey: t.StateKey}]
		if !ok {
			continue
		}
		p, err := w.l.PDU(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		pdus = append(pdus, p)
	}
	auth, err := gomatrixserverlib.NewAuthEvents(pdus)
	if err != nil {
		return nil, nil, err
	}
	refs, err := needed.AuthEventReferences(auth)
	if err != nil {
		return nil, nil, err
	}
	proto.AuthEvents = refs
	return proto, auth, nil
}

// Build builds ev on the room's frontier, signs it with this server's key
// and checks it against the current state, without storing it (an invite
// to another server's user is stored once that server signed it too).
// Refusals: ErrForbidden (auth rules), ErrTooLarge, ErrBadEvent.
func (w *Writer) Build(ctx context.Context, ev Event) (gomatrixserverlib.PDU, error) {
	proto, auth, err := w.proto(ctx, ev)
	if err != nil {
		return nil, err
	}
	cfg := &w.r.cfg
	pdu, err := w.ver.NewEventBuilderFromProtoEvent(proto).Build(cfg.Now(), spec.ServerName(cfg.ServerName),
		gomatrixserverlib.KeyID(cfg.KeyID), cfg.SigningKey)
	if err != nil {
		var ve gomatrixserverlib.EventValidationError
		if errors.As(err, &ve) && ve.Code == gomatrixserverlib.EventValidationTooLarge {
			return nil, refuse(ErrTooLarge, "%s", ve.Message)
		}
		return nil, refuse(ErrBadEvent, "cannot build event: %v", err)
	}
	if ev.StickyMS > 0 {
		if pdu, err = w.makeSticky(pdu, ev.StickyMS); err != nil {
			return nil, err
		}
	}
	if len(pdu.JSON()) > MaxEventBytes {
		return nil, refuse(ErrTooLarge, "event is larger than %d bytes", MaxEventBytes)
	}
	// Whatever route built it, a local event is signed only if every
	// server will read it the same: a duplicate key here would split the
	// room across servers.
	if cfg.CheckJSON != nil {
		if err := cfg.CheckJSON(pdu.JSON()); err != nil {
			return nil, refuse(ErrBadEvent, "event content is not canonical JSON: %v", err)
		}
	}
	// Step 5 for a local event: the state before it is the current state.
	if err := gomatrixserverlib.Allowed(pdu, auth, UserIDForSender); err != nil {
		w.r.log.Debug("event refused by auth rules", "room_id", w.room.RoomID, "type", ev.Type, "sender", ev.Sender, "err", err)
		return nil, refuse(ErrForbidden, "%v", err)
	}
	return pdu, nil
}

// Append builds, signs, auth-checks and stores a local event. Nothing is
// stored when it is refused. A redaction is checked and applied here too
// (redact.go). A repeated client transaction is the caller's to answer.
func (w *Writer) Append(ctx context.Context, ev Event) (storage.Event, error) {
	if ev.Type == spec.MRoomRedaction {
		if err := w.checkLocalRedaction(ctx, &ev); err != nil {
			return storage.Event{}, err
		}
	}
	pdu, err := w.Build(ctx, ev)
	if err != nil {
		return storage.Event{}, err
	}
	row := w.row(pdu)
	row.SnapBefore = w.room.CurrentSnapshot
	if ev.Txn != nil {
		row.TxnDevice, row.TxnID = ev.Txn.DeviceID, ev.Txn.TxnID
	}
	after := w.state
	if sk := pdu.StateKey(); sk != nil {
		after = CloneState(w.state)
		after[storage.StateKey{Type: pdu.Type(), StateKey: *sk}] = pdu.EventID()
	}
	stored, err := w.store(ctx, placement{
		pdu: pdu, row: row, local: true, before: w.state, current: after, extremities: []string{pdu.EventID()},
	})
	if err != nil {
		return storage.Event{}, err
	}
	if ev.Txn != nil {
		if err := w.tx.RecordTxn(ctx, ev.Sender, ev.Txn.DeviceID, ev.Txn.TxnID, stored.EventID); err != nil {
			return storage.Event{}, err
		}
	}
	if ev.Type == spec.MRoomRedaction {
		if err := w.redactLocal(ctx, ev.Redacts, stored.EventID); err != nil {
			return storage.Event{}, err
		}
	}
	return stored, nil
}
