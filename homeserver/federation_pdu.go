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
	if len(raw) > maxEventBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadPDU, maxEventBytes)
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
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(room.Version))
	if err != nil {
		return nil, fmt.Errorf("%w: room version %q", ErrBadPDU, room.Version)
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
	if err := gomatrixserverlib.VerifyEventSignatures(ctx, pdu, f.keyRing, userIDForSender); err != nil {
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

// storeChecked auth-checks a checked PDU against its auth events and the
// state before it, and stores it, all inside one write so that local
// sends and other inbound events see a consistent frontier.
func (f *federation) storeChecked(ctx context.Context, cp *checkedPDU) error {
	err := f.s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		_, err := f.appendRemote(ctx, tx, cp)
		return err
	})
	var rej *rejection
	if errors.As(err, &rej) {
		// Remembered so that events citing it are refused too, and a
		// resend is answered without the work.
		werr := f.s.db.WriteTx(ctx, func(tx *storage.Tx) error {
			return tx.RecordVerdict(ctx, storage.Verdict{EventID: cp.pdu.EventID(), RoomID: cp.room.RoomID,
				Verdict: storage.VerdictRejected, Reason: rej.Error(), ReceivedTS: f.s.nowMS()})
		})
		if werr != nil {
			f.log.Warn("recording a rejected event failed", "event_id", cp.pdu.EventID(), "err", werr)
		}
	}
	return err
}

// rejection is an authorization failure of an event whose hash and
// signatures are good (spec: Server-Server API, "Rejection"): unlike a
// forgery it is recorded, and events that cite it as an auth event are
// rejected in turn.
type rejection struct{ err error }

func (r *rejection) Error() string { return r.err.Error() }
func (r *rejection) Unwrap() error { return r.err }

func reject(format string, args ...any) error {
	return &rejection{fmt.Errorf("%w: "+format, append([]any{ErrBadPDU}, args...)...)}
}

// pduLoader loads stored events as PDUs inside a write.
type pduLoader struct {
	f   *federation
	tx  *storage.Tx
	ver gomatrixserverlib.IRoomVersion
	m   map[string]gomatrixserverlib.PDU
}

func (l *pduLoader) load(ctx context.Context, ids []string) ([]gomatrixserverlib.PDU, error) {
	if l.m == nil {
		l.m = make(map[string]gomatrixserverlib.PDU)
	}
	var need []string
	for _, id := range ids {
		if _, ok := l.m[id]; !ok {
			need = append(need, id)
		}
	}
	if len(need) > 0 {
		evs, err := l.tx.Events(ctx, need)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			p, err := l.ver.NewEventFromTrustedJSONWithEventID(e.EventID, e.JSON, e.RedactedBy != "")
			if err != nil {
				return nil, err
			}
			l.m[e.EventID] = p
		}
	}
	out := make([]gomatrixserverlib.PDU, 0, len(ids))
	for _, id := range ids {
		if p, ok := l.m[id]; ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// authChain loads the auth events of pdus, transitively.
func (l *pduLoader) authChain(ctx context.Context, pdus []gomatrixserverlib.PDU) ([]gomatrixserverlib.PDU, error) {
	seen := map[string]bool{}
	var out []gomatrixserverlib.PDU
	frontier := pdus
	for len(frontier) > 0 {
		var ids []string
		for _, p := range frontier {
			for _, a := range p.AuthEventIDs() {
				if !seen[a] {
					seen[a] = true
					ids = append(ids, a)
				}
			}
		}
		next, err := l.load(ctx, ids)
		if err != nil {
			return nil, err
		}
		out = append(out, next...)
		frontier = next
	}
	return out, nil
}

// resolve runs state resolution (v2 for the room versions we support)
// over several state sets.
func (l *pduLoader) resolve(ctx context.Context, sets []storage.StateMap) (storage.StateMap, error) {
	conflict := false
	for _, s := range sets[1:] {
		if !sameStateMap(s, sets[0]) {
			conflict = true
			break
		}
	}
	if !conflict {
		return sets[0], nil
	}
	idSet := map[string]bool{}
	for _, s := range sets {
		for _, id := range s {
			idSet[id] = true
		}
	}
	ids := make([]string, 0, len(idSet))
	for id := range idSet {
		ids = append(ids, id)
	}
	pdus, err := l.load(ctx, ids)
	if err != nil {
		return nil, err
	}
	auth, err := l.authChain(ctx, pdus)
	if err != nil {
		return nil, err
	}
	resolved, err := gomatrixserverlib.ResolveConflicts(l.ver.Version(), pdus, auth, userIDForSender, func(string) bool { return false })
	if err != nil {
		return nil, err
	}
	out := make(storage.StateMap, len(resolved))
	for _, p := range resolved {
		if p.StateKey() != nil {
			out[storage.StateKey{Type: p.Type(), StateKey: *p.StateKey()}] = p.EventID()
		}
	}
	return out, nil
}

func sameStateMap(a, b storage.StateMap) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// authAgainst checks pdu against the auth events a state map holds.
func (l *pduLoader) authAgainst(ctx context.Context, pdu gomatrixserverlib.PDU, state storage.StateMap) error {
	needed := gomatrixserverlib.StateNeededForAuth([]gomatrixserverlib.PDU{pdu})
	var ids []string
	for _, t := range needed.Tuples() {
		if id, ok := state[storage.StateKey{Type: t.EventType, StateKey: t.StateKey}]; ok {
			ids = append(ids, id)
		}
	}
	pdus, err := l.load(ctx, ids)
	if err != nil {
		return err
	}
	provider, err := gomatrixserverlib.NewAuthEvents(pdus)
	if err != nil {
		return err
	}
	return gomatrixserverlib.Allowed(pdu, provider, userIDForSender)
}

// appendRemote stores cp in the room's timeline inside tx (spec:
// Server-Server API, "Checks performed on receipt of a PDU", 4–5): it
// must pass auth against its own auth events and against the state before
// it, computed from its prev events (resolved when they fork). The room's
// new state is the state after it when it extends our whole frontier,
// else the resolution of our current state and its state.
func (f *federation) appendRemote(ctx context.Context, tx *storage.Tx, cp *checkedPDU) (int64, error) {
	pdu := cp.pdu
	id := pdu.EventID()
	if _, err := tx.Event(ctx, id); err == nil {
		return 0, nil
	}
	room, err := tx.Room(ctx, cp.room.RoomID)
	if err != nil {
		return 0, err
	}
	l := &pduLoader{f: f, tx: tx, ver: cp.ver, m: make(map[string]gomatrixserverlib.PDU)}
	// 4. Auth events: all known and not rejected, and they allow the event.
	if err := l.allowedByOwnAuth(ctx, pdu); err != nil {
		return 0, err
	}
	// 5. State before the event.
	prevIDs := pdu.PrevEventIDs()
	prevs, err := tx.Events(ctx, prevIDs)
	if err != nil {
		return 0, err
	}
	if len(prevs) != len(prevIDs) || len(prevIDs) == 0 {
		return 0, fmt.Errorf("%w: missing prev events", ErrBadPDU)
	}
	current, err := tx.Snapshot(ctx, room.CurrentSnapshot)
	if err != nil {
		return 0, err
	}
	var sets []storage.StateMap
	var beforeID int64
	guessed := false
	for _, p := range prevs {
		if p.SnapAfter == 0 {
			// Known without the state at it (from before our join,
			// backfilled, or soft-failed): our best knowledge is the
			// current state.
			sets = append(sets, current)
			guessed = true
			continue
		}
		st, err := tx.Snapshot(ctx, p.SnapAfter)
		if err != nil {
			return 0, err
		}
		sets = append(sets, st)
		beforeID = p.SnapAfter
	}
	if len(prevs) > 1 {
		beforeID = 0
	}
	before, err := l.resolve(ctx, sets)
	if err != nil {
		return 0, fmt.Errorf("state resolution: %w", err)
	}
	if err := l.authAgainst(ctx, pdu, before); err != nil {
		if guessed {
			// Refused against a state we only guessed: not a verdict.
			return 0, fmt.Errorf("%w: the state we hold before it refuses it: %v", ErrBadPDU, err)
		}
		return 0, reject("state before it refuses it: %v", err)
	}
	// 6. Soft failure: the event must also pass against the room's current
	// state (resolved with the state before it when they differ), else it
	// is kept out of the timeline, the frontier and the current state; a
	// user banned here cannot keep talking through a server that has not
	// heard of the ban (spec: Server-Server API, "Soft failure").
	if !sameStateMap(before, current) {
		now, err := l.resolve(ctx, []storage.StateMap{current, before})
		if err != nil {
			return 0, fmt.Errorf("state resolution: %w", err)
		}
		if err := l.authAgainst(ctx, pdu, now); err != nil {
			f.log.Info("inbound PDU soft-failed", "event_id", id, "room_id", room.RoomID, "err", err)
			if err := tx.StoreOutlier(ctx, eventRow(pdu, f.s.nowMS())); err != nil {
				return 0, err
			}
			return 0, tx.RecordVerdict(ctx, storage.Verdict{EventID: id, RoomID: room.RoomID,
				Verdict: storage.VerdictSoftFailed, Reason: err.Error(), ReceivedTS: f.s.nowMS()})
		}
	}
	after := before
	if sk := pdu.StateKey(); sk != nil {
		after = cloneState(before)
		after[storage.StateKey{Type: pdu.Type(), StateKey: *sk}] = id
	}
	// The new frontier and current state.
	prevSet := map[string]bool{}
	for _, p := range prevIDs {
		prevSet[p] = true
	}
	covered := true
	ext := []string{}
	for _, x := range room.Extremities {
		if prevSet[x] {
			continue
		}
		covered = false
		ext = append(ext, x)
	}
	ext = append(ext, id)
	newCurrent := after
	if !covered {
		// Record the new event's PDU for resolution before it is stored.
		l.m[id] = pdu
		if newCurrent, err = l.resolve(ctx, []storage.StateMap{current, after}); err != nil {
			return 0, fmt.Errorf("state resolution: %w", err)
		}
	}
	memberships := map[string]string{}
	var sk *string
	if pdu.StateKey() != nil {
		k := *pdu.StateKey()
		sk = &k
		if pdu.Type() == spec.MRoomMember {
			memberships[id], _ = pdu.Membership()
		}
	}
	ev := storage.Event{
		EventID: id, RoomID: room.RoomID, Type: pdu.Type(), StateKey: sk, Sender: string(pdu.SenderID()),
		OriginTS: int64(pdu.OriginServerTS()), ReceivedTS: f.s.nowMS(), Depth: pdu.Depth(), JSON: pdu.JSON(),
	}
	if sk != nil {
		if prevID, ok := before[storage.StateKey{Type: pdu.Type(), StateKey: *sk}]; ok {
			if pp, err := l.load(ctx, []string{prevID}); err == nil && len(pp) == 1 {
				ev.UnsignedExtra, _ = json.Marshal(map[string]any{
					"prev_content": json.RawMessage(pp[0].Content()), "replaces_state": prevID, "prev_sender": string(pp[0].SenderID()),
				})
			}
		}
	}
	pos, err := tx.StoreRemoteEvent(ctx, storage.RemoteEvent{
		Event: ev, Before: before, BeforeID: beforeID, Current: newCurrent, Extremities: ext, Depth: pdu.Depth(), Memberships: memberships,
	})
	if err != nil {
		return 0, err
	}
	ev.Pos = pos
	if err := f.s.rtcAfterStore(ctx, tx, ev, sk != nil && newCurrent[storage.StateKey{Type: pdu.Type(), StateKey: *sk}] == id); err != nil {
		return 0, err
	}
	return pos, f.applyRedactions(ctx, tx, l, pdu, before)
}

// applyRedactions redacts what a received event's arrival settles (spec:
// Client-Server API, "Redactions", and the room versions' note that a
// redaction is applied only once its target is known, and only if the
// two senders share a server or the redacter has the redact power
// level): the target of a redaction, or an earlier redaction's target
// that arrived only now.
func (f *federation) applyRedactions(ctx context.Context, tx *storage.Tx, l *pduLoader, pdu gomatrixserverlib.PDU, before storage.StateMap) error {
	if pdu.Type() == spec.MRoomRedaction {
		target, err := tx.Event(ctx, pdu.Redacts())
		if errors.Is(err, storage.ErrNotFound) {
			return tx.AddPendingRedaction(ctx, pdu.Redacts(), pdu.EventID())
		}
		if err != nil || target.RoomID != pdu.RoomID().String() || target.RedactedBy != "" {
			return err
		}
		return f.redactIfAllowed(ctx, tx, l, pdu, target, before)
	}
	ids, err := tx.TakePendingRedactions(ctx, pdu.EventID())
	if err != nil || len(ids) == 0 {
		return err
	}
	redactions, err := tx.Events(ctx, ids)
	if err != nil {
		return err
	}
	for _, r := range redactions {
		rp, err := l.load(ctx, []string{r.EventID})
		if err != nil || len(rp) == 0 || rp[0].Redacts() != pdu.EventID() || r.RoomID != pdu.RoomID().String() {
			continue
		}
		target, err := tx.Event(ctx, pdu.EventID())
		if err != nil || target.RedactedBy != "" {
			return err
		}
		st, err := tx.Snapshot(ctx, r.SnapBefore)
		if err != nil {
			return err
		}
		if err := f.redactIfAllowed(ctx, tx, l, rp[0], target, st); err != nil {
			return err
		}
	}
	return nil
}

// redactIfAllowed stores target's redacted form if redaction, judged by
// the state before it, may redact it.
func (f *federation) redactIfAllowed(ctx context.Context, tx *storage.Tx, l *pduLoader, redaction gomatrixserverlib.PDU, target storage.Event, state storage.StateMap) error {
	if serverOf(string(redaction.SenderID())) != serverOf(target.Sender) {
		level, err := l.powerLevels(ctx, state)
		if err != nil {
			return err
		}
		if level.UserLevel(redaction.SenderID()) < level.Redact {
			f.log.Info("remote redaction not applied: no power to redact another server's event",
				"redaction", redaction.EventID(), "target", target.EventID)
			return nil
		}
	}
	redacted, err := l.ver.RedactEventJSON(target.JSON)
	if err != nil {
		return err
	}
	delete(l.m, target.EventID)
	f.s.statePDUs.drop(target.EventID)
	return tx.Redact(ctx, target.EventID, redacted, redaction.EventID())
}

// powerLevels returns the power levels a state map holds, or the defaults
// with the creator at 100 (spec: "m.room.power_levels", absent event).
func (l *pduLoader) powerLevels(ctx context.Context, state storage.StateMap) (*gomatrixserverlib.PowerLevelContent, error) {
	if id, ok := state[storage.StateKey{Type: spec.MRoomPowerLevels}]; ok {
		if p, err := l.load(ctx, []string{id}); err == nil && len(p) == 1 {
			return p[0].PowerLevels()
		}
	}
	pl := gomatrixserverlib.PowerLevelContent{}
	pl.Defaults()
	if id, ok := state[storage.StateKey{Type: spec.MRoomCreate}]; ok {
		if p, err := l.load(ctx, []string{id}); err == nil && len(p) == 1 {
			pl.Users = map[string]int64{string(p[0].SenderID()): 100}
		}
	}
	return &pl, nil
}
