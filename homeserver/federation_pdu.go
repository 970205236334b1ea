package homeserver

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

// pduRoomID reads room_id from a raw PDU.
func pduRoomID(raw []byte) (string, error) {
	var h struct {
		RoomID string `json:"room_id"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadPDU, err)
	}
	if h.RoomID == "" {
		return "", fmt.Errorf("%w: no room_id", ErrBadPDU)
	}
	return h.RoomID, nil
}

// checkPDU runs the spec's checks on a received PDU that need no state
// (Server-Server API, "Checks performed on receipt of a PDU", 1–3): it is
// at most 65,536 bytes of canonical JSON (integers only, within ±2^53),
// of the room wantRoom (when given), which we know; its content hash
// matches; and the sender's server signed it.
func (f *federation) checkPDU(ctx context.Context, raw []byte, wantRoom string) (*checkedPDU, error) {
	return f.checkArrived(ctx, raw, wantRoom, arrivedPushed)
}

// arrival says how a PDU reached us.
type arrival int

const (
	// arrivedPushed: sent by its origin (/send, send_join, send_leave):
	// the origin's own new event, so a content hash mismatch is forgery.
	arrivedPushed arrival = iota
	// arrivedPulled: history we asked a server for (get_missing_events,
	// /event, /state, /state_ids, /backfill). Servers serve redacted
	// events in redacted form, so a content hash mismatch is not refused:
	// the event is kept redacted, its signatures still checked (spec:
	// Server-Server API, "Checks performed on receipt of a PDU", 3).
	arrivedPulled
)

// checkArrived is checkPDU for a PDU that arrived how.
func (f *federation) checkArrived(ctx context.Context, raw []byte, wantRoom string, how arrival) (*checkedPDU, error) {
	if len(raw) > rooms.MaxEventBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadPDU, rooms.MaxEventBytes)
	}
	if err := checkCanonicalJSON(raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPDU, err)
	}
	if err := sameWhenReparsed(raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPDU, err)
	}
	roomID, err := pduRoomID(raw)
	if err != nil {
		return nil, err
	}
	if wantRoom != "" && roomID != wantRoom {
		return nil, fmt.Errorf("%w: event is for room %s, not %s", ErrBadPDU, roomID, wantRoom)
	}
	room, err := f.s.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: unknown room %s", ErrBadPDU, roomID)
	}
	if err != nil {
		return nil, err
	}
	return f.parsePDU(ctx, raw, room, true, how)
}

// checkPDUInVersion parses raw in room's version and checks its hash and,
// with verifySigs, its signatures (an invite's, for instance, is checked
// before the invitee's server signed it).
func (f *federation) checkPDUInVersion(ctx context.Context, raw []byte, room storage.Room, verifySigs bool) (*checkedPDU, error) {
	return f.parsePDU(ctx, raw, room, verifySigs, arrivedPushed)
}

func (f *federation) parsePDU(ctx context.Context, raw []byte, room storage.Room, verifySigs bool, how arrival) (*checkedPDU, error) {
	ver, err := rooms.Version(room.Version)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPDU, err)
	}
	pdu, err := ver.NewEventFromUntrustedJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPDU, err)
	}
	// From here on the event has an ID, which /send's answer names.
	if pdu.Redacted() && how == arrivedPushed {
		// The library redacts an event whose content hash does not match.
		return nil, &badPDU{pdu.EventID(), fmt.Errorf("%w: content hash mismatch", ErrBadPDU)}
	}
	if pdu.RoomID().String() != room.RoomID {
		return nil, &badPDU{pdu.EventID(), fmt.Errorf("%w: room mismatch", ErrBadPDU)}
	}
	if !verifySigs {
		return &checkedPDU{pdu: pdu, room: room, ver: ver}, nil
	}
	if err := gomatrixserverlib.VerifyEventSignatures(ctx, pdu, f.keyRing, rooms.UserIDForSender); err != nil {
		return nil, &badPDU{pdu.EventID(), fmt.Errorf("%w: signatures: %v", ErrBadPDU, err)}
	}
	return &checkedPDU{pdu: pdu, room: room, ver: ver}, nil
}

// badPDU is a refusal of a PDU that parsed far enough to have an event ID.
type badPDU struct {
	eventID string
	err     error
}

func (b *badPDU) Error() string { return b.err.Error() }
func (b *badPDU) Unwrap() error { return b.err }

// refusedID is the event ID a refusal names, "" if the PDU had none.
func refusedID(err error) string {
	var b *badPDU
	if errors.As(err, &b) {
		return b.eventID
	}
	return ""
}

// receivePDU checks a PDU and adds it to its room's timeline. When prev
// events are missing and origin is known, a pushed PDU's gap is first
// asked for with get_missing_events; prev events still missing then are
// fetched with the state at them (fillPrevState). A PDU already stored
// is accepted again.
func (f *federation) receivePDU(ctx context.Context, origin string, raw []byte, wantRoom string, how arrival) (string, error) {
	cp, err := f.checkArrived(ctx, raw, wantRoom, how)
	if err != nil {
		return refusedID(err), err
	}
	id := cp.pdu.EventID()
	if _, err := f.s.db.Event(ctx, id); err == nil {
		return id, nil
	}
	if v, err := f.s.db.EventVerdict(ctx, id); err == nil && v.Verdict == storage.VerdictRejected {
		return id, fmt.Errorf("%w: rejected before: %s", ErrBadPDU, v.Reason)
	}
	if origin != "" {
		missing, err := f.unknownEvents(ctx, cp.pdu.PrevEventIDs())
		if err != nil {
			return id, err
		}
		if len(missing) > 0 && how == arrivedPushed {
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
func (f *federation) unknownEvents(ctx context.Context, ids []string) ([]string, error) {
	known, err := f.s.db.Events(ctx, ids)
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
func (f *federation) fetchMissing(ctx context.Context, origin string, cp *checkedPDU) {
	room, err := f.s.db.Room(ctx, cp.room.RoomID)
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
		if _, err := f.receivePDU(ctx, origin, e.raw, room.RoomID, arrivedPulled); err != nil {
			f.log.Info("missing event refused", "origin", origin, "room_id", room.RoomID, "err", err)
		}
	}
}

// storeChecked appends a checked PDU to its room's timeline through
// rooms (steps 4–6 of "Checks performed on receipt of a PDU"), inside one
// write so that local sends and other inbound events see a consistent
// frontier. A rejection is recorded, so that events citing it are
// refused too, and a resend is answered without the work.
func (f *federation) storeChecked(ctx context.Context, cp *checkedPDU) error {
	err := f.s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		return f.appendChecked(ctx, tx, cp)
	})
	if errors.Is(err, rooms.ErrRejected) {
		werr := f.s.db.WriteTx(ctx, func(tx *storage.Tx) error {
			return tx.RecordVerdict(ctx, storage.Verdict{EventID: cp.pdu.EventID(), RoomID: cp.room.RoomID,
				Verdict: storage.VerdictRejected, Reason: err.Error(), ReceivedTS: f.s.nowMS()})
		})
		if werr != nil {
			f.log.Warn("recording a rejected event failed", "event_id", cp.pdu.EventID(), "err", werr)
		}
	}
	return err
}

// appendChecked appends a checked PDU inside tx; rooms' refusals come
// back wrapped in ErrBadPDU.
func (f *federation) appendChecked(ctx context.Context, tx *storage.Tx, cp *checkedPDU) error {
	w, err := f.s.rooms.Open(ctx, tx, cp.room.RoomID)
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
