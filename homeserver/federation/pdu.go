package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// maxMissingEvents bounds one get_missing_events request.
const maxMissingEvents = 20

// checkedPDU is a PDU that passed the checks which need no room state:
// size, canonical JSON, room, content hash and signatures.
type checkedPDU struct {
	pdu  gomatrixserverlib.PDU
	room storage.Room
	ver  gomatrixserverlib.IRoomVersion
}

// checkPDU runs steps 1–3 of the spec's checks on a PDU pushed to us
// (Server-Server API, "Checks performed on receipt of a PDU"; the checks
// are rooms', receive.go): format, content hash, signatures, and that it
// is of the room wantRoom (when given), which we know.
func (f *Service) checkPDU(ctx context.Context, raw []byte, wantRoom string) (*checkedPDU, error) {
	return f.checkArrived(ctx, raw, wantRoom, rooms.Pushed)
}

// checkArrived is checkPDU for a PDU that arrived how.
func (f *Service) checkArrived(ctx context.Context, raw []byte, wantRoom string, how rooms.Arrival) (*checkedPDU, error) {
	if err := f.rooms.CheckFormat(raw); err != nil {
		return nil, pduRefusal(err)
	}
	roomID, err := rooms.RoomOf(raw)
	if err != nil {
		return nil, pduRefusal(err)
	}
	if wantRoom != "" && roomID != wantRoom {
		return nil, fmt.Errorf("%w: event is for room %s, not %s", ErrBadPDU, roomID, wantRoom)
	}
	room, err := f.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: unknown room %s", ErrBadPDU, roomID)
	}
	if err != nil {
		return nil, err
	}
	return f.checkReceived(ctx, raw, room, how, true)
}

// checkReceived parses raw in room's version and checks its hash and,
// with verifySigs, its signatures (an invite's, for instance, is checked
// before the invitee's server signed it).
func (f *Service) checkReceived(ctx context.Context, raw []byte, room storage.Room, how rooms.Arrival, verifySigs bool) (*checkedPDU, error) {
	var keys gomatrixserverlib.JSONVerifier
	if verifySigs {
		keys = f.keyRing
	}
	pdu, ver, err := f.rooms.CheckReceived(ctx, raw, room, how, keys)
	if err != nil {
		return nil, pduRefusal(err)
	}
	return &checkedPDU{pdu: pdu, room: room, ver: ver}, nil
}

// refusedID is the event ID a refusal names, "" if the PDU had none.
func refusedID(err error) string { return rooms.RefusedID(err) }

// receivePDU checks a PDU and adds it to its room's timeline. When prev
// events are missing and origin is known, a pushed PDU's gap is first
// asked for with get_missing_events; prev events still missing then are
// fetched with the state at them (fillPrevState). A PDU already stored
// is accepted again.
func (f *Service) receivePDU(ctx context.Context, origin string, raw []byte, wantRoom string, how rooms.Arrival) (string, error) {
	cp, err := f.checkArrived(ctx, raw, wantRoom, how)
	if err != nil {
		return refusedID(err), err
	}
	id := cp.pdu.EventID()
	if _, err := f.db.Event(ctx, id); err == nil {
		return id, nil
	}
	if v, err := f.db.EventVerdict(ctx, id); err == nil && v.Verdict == storage.VerdictRejected {
		return id, fmt.Errorf("%w: rejected before: %s", ErrBadPDU, v.Reason)
	}
	if origin != "" {
		missing, err := f.unknownEvents(ctx, cp.pdu.PrevEventIDs())
		if err != nil {
			return id, err
		}
		if len(missing) > 0 && how == rooms.Pushed {
			f.fetchMissing(ctx, origin, cp)
			if missing, err = f.unknownEvents(ctx, missing); err != nil {
				return id, err
			}
		}
		for _, prev := range missing {
			if err := f.fillPrevState(ctx, origin, cp, prev); err != nil {
				f.log.Info("state at a missing prev event not obtained", "origin", origin, "event_id", prev, "err", err)
				break
			}
		}
		if len(missing) > 0 {
			// An outage longer than get_missing_events reaches: the
			// events in between are a gap (gaps.go).
			if err := f.storeChecked(ctx, cp); err != nil {
				return id, err
			}
			f.noteGap(ctx, cp.room.RoomID, id)
			return id, nil
		}
	}
	return id, f.storeChecked(ctx, cp)
}

// unknownEvents returns those of ids that are not stored.
func (f *Service) unknownEvents(ctx context.Context, ids []string) ([]string, error) {
	known, err := f.db.Events(ctx, ids)
	if err != nil || len(known) == len(ids) {
		return nil, err
	}
	have := make(map[string]bool, len(known))
	for _, e := range known {
		have[e.EventID] = true
	}
	var out []string
	for _, id := range ids {
		if !have[id] {
			out = append(out, id)
		}
	}
	return out, nil
}

// fetchMissing asks origin for the events between our frontier and cp
// (spec: Server-Server API, "POST /get_missing_events") and receives them
// oldest first. Failures are logged: the event is then refused for its
// missing prev events.
func (f *Service) fetchMissing(ctx context.Context, origin string, cp *checkedPDU) {
	room, err := f.db.Room(ctx, cp.room.RoomID)
	if err != nil {
		return
	}
	res, err := f.client.LookupMissingEvents(ctx, f.origin(), spec.ServerName(origin), room.RoomID, fclient.MissingEvents{
		Limit: maxMissingEvents, MinDepth: 0, EarliestEvents: room.Extremities, LatestEvents: []string{cp.pdu.EventID()},
	}, gomatrixserverlib.RoomVersion(room.Version))
	if err != nil {
		f.log.Info("get_missing_events failed", "origin", origin, "room_id", room.RoomID, "err", err)
		return
	}
	type byDepth struct {
		depth int64
		raw   []byte
	}
	var evs []byDepth
	for _, js := range res.Events {
		var h struct {
			Depth int64 `json:"depth"`
		}
		if json.Unmarshal(js, &h) != nil {
			continue
		}
		evs = append(evs, byDepth{h.Depth, js})
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].depth < evs[j].depth })
	for _, e := range evs {
		if _, err := f.receivePDU(ctx, origin, e.raw, room.RoomID, rooms.Pulled); err != nil {
			f.log.Info("missing event refused", "origin", origin, "room_id", room.RoomID, "err", err)
		}
	}
}

// storeChecked appends a checked PDU to its room's timeline through
// rooms (steps 4–6 of "Checks performed on receipt of a PDU"), inside one
// write so that local sends and other inbound events see a consistent
// frontier. A rejection is recorded, so that events citing it are
// refused too, and a resend is answered without the work.
func (f *Service) storeChecked(ctx context.Context, cp *checkedPDU) error {
	err := f.db.WriteTx(ctx, func(tx *storage.Tx) error {
		return f.appendChecked(ctx, tx, cp)
	})
	if errors.Is(err, rooms.ErrRejected) {
		werr := f.db.WriteTx(ctx, func(tx *storage.Tx) error {
			return tx.RecordVerdict(ctx, storage.Verdict{EventID: cp.pdu.EventID(), RoomID: cp.room.RoomID,
				Verdict: storage.VerdictRejected, Reason: err.Error(), ReceivedTS: f.nowMS()})
		})
		if werr != nil {
			f.log.Warn("recording a rejected event failed", "event_id", cp.pdu.EventID(), "err", werr)
		}
	}
	return err
}

// appendChecked appends a checked PDU inside tx; rooms' refusals come
// back wrapped in ErrBadPDU.
func (f *Service) appendChecked(ctx context.Context, tx *storage.Tx, cp *checkedPDU) error {
	w, err := f.rooms.Open(ctx, tx, cp.room.RoomID)
	if err != nil {
		return pduRefusal(err)
	}
	_, _, err = w.AppendRemote(ctx, cp.pdu)
	return pduRefusal(err)
}

// pduRefusal wraps a refusal by rooms in ErrBadPDU, the federation's
// error for a PDU it does not take; other errors pass unchanged.
func pduRefusal(err error) error {
	var re *rooms.Error
	if errors.As(err, &re) && !errors.Is(err, ErrBadPDU) {
		return fmt.Errorf("%w: %w", ErrBadPDU, err)
	}
	return err
}

// reject is a rejection found by the federation's own fetches (a served
// state that refuses the event it is for).
func reject(format string, args ...any) error {
	return pduRefusal(rooms.Reject(format, args...))
}
