package federation

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// maxFetchedState bounds the events one fillPrevState takes in.
const maxFetchedState = 5000

// fillPrevState fetches a prev event of cp that we do not have, with the
// state before it, from origin (spec: Server-Server API, "Retrieving
// events": GET /state_ids, then the unknown events with GET /event, or
// GET /state when many are unknown). Every fetched event is checked
// (hash, signatures, room, and auth against its own auth events) and
// stored as an outlier; the prev event carries the state after it, so
// cp's state can be computed.
func (f *Service) fillPrevState(ctx context.Context, origin string, cp *checkedPDU, prevID string) error {
	server := spec.ServerName(origin)
	roomID := cp.room.RoomID
	got, err := f.fetchEvents(ctx, server, cp.room, "", []string{prevID})
	if err != nil {
		return err
	}
	prev := got[0]
	ids, err := f.client.LookupStateIDs(ctx, f.origin(), server, roomID, prevID)
	if err != nil {
		return fmt.Errorf("%w: state_ids: %v", ErrFederation, err)
	}
	if len(ids.StateEventIDs)+len(ids.AuthEventIDs) > maxFetchedState {
		return fmt.Errorf("%w: state_ids names more than %d events", ErrBadPDU, maxFetchedState)
	}
	want := append(append([]string{}, ids.StateEventIDs...), ids.AuthEventIDs...)
	want = append(want, prev.AuthEventIDs()...)
	need, err := f.unknownEvents(ctx, dedupe(want))
	if err != nil {
		return err
	}
	fetched, err := f.fetchEvents(ctx, server, cp.room, prevID, need)
	if err != nil {
		return err
	}
	return f.db.WriteTx(ctx, func(tx *storage.Tx) error {
		l := f.rooms.TxLoader(tx, cp.ver)
		before, err := f.servedState(ctx, tx, l, fetched, roomID, ids.StateEventIDs)
		if err != nil {
			return err
		}
		if err := l.AuthAgainst(ctx, prev, before); err != nil {
			return reject("the served state refuses %s: %v", prevID, err)
		}
		if err := l.AllowedByOwnAuth(ctx, tx, prev); err != nil {
			return pduRefusal(err)
		}
		return tx.StoreOutlierWithState(ctx, rooms.EventRow(prev, f.nowMS()), before)
	})
}

// servedState stores fetched events as outliers once each passes its own
// auth events (step 4), and returns the state that /state_ids named.
func (f *Service) servedState(ctx context.Context, tx *storage.Tx, l *rooms.Loader, fetched []gomatrixserverlib.PDU, roomID string, stateIDs []string) (storage.StateMap, error) {
	if err := l.StoreOutliers(ctx, tx, fetched, f.nowMS()); err != nil {
		return nil, pduRefusal(err)
	}
	states, err := l.Load(ctx, stateIDs)
	if err != nil {
		return nil, err
	}
	if len(states) != len(dedupe(stateIDs)) {
		return nil, fmt.Errorf("%w: state_ids names events that were not served", ErrBadPDU)
	}
	before, err := rooms.StateMapOf(roomID, states)
	if err != nil {
		return nil, fmt.Errorf("%w: state_ids names %w", ErrBadPDU, err)
	}
	return before, nil
}

// fetchEvents fetches and checks events of room from server: one by one
// with /event when few or atEvent is "", else through /state at atEvent.
// Whatever else an answer holds is checked and dropped.
func (f *Service) fetchEvents(ctx context.Context, server spec.ServerName, room storage.Room, atEvent string, ids []string) ([]gomatrixserverlib.PDU, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	wanted := make(map[string]bool, len(ids))
	for _, id := range ids {
		wanted[id] = true
	}
	var raws [][]byte
	if len(ids) <= max(f.opts.StateByID, 0) || atEvent == "" {
		for _, id := range ids {
			txn, err := f.client.GetEvent(ctx, f.origin(), server, id)
			if err != nil {
				return nil, fmt.Errorf("%w: event %s: %v", ErrFederation, id, err)
			}
			for _, r := range txn.PDUs {
				raws = append(raws, r)
			}
		}
	} else {
		st, err := f.client.LookupState(ctx, f.origin(), server, room.RoomID, atEvent, gomatrixserverlib.RoomVersion(room.Version))
		if err != nil {
			return nil, fmt.Errorf("%w: state: %v", ErrFederation, err)
		}
		for _, r := range append(st.StateEvents, st.AuthEvents...) {
			raws = append(raws, r)
		}
	}
	out := make([]gomatrixserverlib.PDU, 0, len(ids))
	for _, raw := range raws {
		cp, err := f.checkArrived(ctx, raw, room.RoomID, rooms.Pulled)
		if err != nil {
			// Junk beside what we asked for spoils nothing else; a
			// requested event that fails is missing below.
			f.log.Info("fetched PDU refused", "server", server, "room_id", room.RoomID, "err", err)
			continue
		}
		if wanted[cp.pdu.EventID()] {
			delete(wanted, cp.pdu.EventID())
			out = append(out, cp.pdu)
		}
	}
	if len(wanted) > 0 {
		return nil, fmt.Errorf("%w: %d requested events were not served", ErrBadPDU, len(wanted))
	}
	return out, nil
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// maxBackfillAuth bounds the unknown auth events one backfill fetches.
const maxBackfillAuth = 50

// dryBackfillRetry is how long a backfill that brought nothing is not
// tried again from the same point.
const dryBackfillRetry = time.Minute

// dryBackfills remembers, per room, the point from which a backfill
// brought nothing, so that a client scrolling at the true start of what
// any server holds does not ask the room's servers again each time.
type dryBackfills struct {
	mu sync.Mutex
	m  map[string]dryPoint
}

type dryPoint struct {
	eventID string
	at      time.Time
}

func (d *dryBackfills) isDry(roomID, eventID string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.m[roomID]
	return ok && p.eventID == eventID && now.Sub(p.at) < dryBackfillRetry
}

func (d *dryBackfills) mark(roomID, eventID string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil || len(d.m) > 10000 {
		d.m = make(map[string]dryPoint)
	}
	d.m[roomID] = dryPoint{eventID, now}
}

// Backfill asks the room's other servers for up to limit events before
// the start of our timeline of roomID (spec: Server-Server API,
// "Backfilling and retrieving missing events": GET /backfill), checks
// them like any PDU (hash, signatures, auth against their auth events,
// which are fetched when unknown) and adds them before our history. It
// reports how many were added. Events not older than our earliest one
// are ignored: backfill only reaches back.
func (f *Service) Backfill(ctx context.Context, roomID string, limit int) (int, error) {
	earliest, err := f.db.EarliestTimelineEvent(ctx, roomID)
	if err != nil || earliest.Type == spec.MRoomCreate {
		return 0, nil
	}
	now := f.clock.Now()
	if f.dry.isDry(roomID, earliest.EventID, now) {
		return 0, nil
	}
	room, err := f.db.Room(ctx, roomID)
	if err != nil {
		return 0, err
	}
	servers, err := f.roomServers(ctx, roomID)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	tried := 0
	for _, server := range servers {
		if server == f.serverName || tried == 3 {
			continue
		}
		tried++
		n, err := f.backfillFrom(ctx, spec.ServerName(server), room, earliest, limit)
		if err != nil {
			f.log.Info("backfill failed", "room_id", roomID, "server", server, "err", err)
			continue
		}
		if n > 0 {
			return n, nil
		}
	}
	f.dry.mark(roomID, earliest.EventID, now)
	return 0, nil
}

func (f *Service) backfillFrom(ctx context.Context, server spec.ServerName, room storage.Room, earliest storage.Event, limit int) (int, error) {
	txn, err := f.client.Backfill(ctx, f.origin(), server, room.RoomID, min(limit+1, maxServedEvents), []string{earliest.EventID})
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrFederation, err)
	}
	var pdus []gomatrixserverlib.PDU
	var ver gomatrixserverlib.IRoomVersion
	inBatch := map[string]bool{}
	for _, raw := range txn.PDUs {
		cp, err := f.checkArrived(ctx, raw, room.RoomID, rooms.Pulled)
		if err != nil {
			f.log.Info("backfilled PDU refused", "server", server, "room_id", room.RoomID, "err", err)
			continue
		}
		ver = cp.ver
		if cp.pdu.Depth() >= earliest.Depth || inBatch[cp.pdu.EventID()] {
			continue // not before our history (the event we asked from, or later)
		}
		if v, err := f.db.EventVerdict(ctx, cp.pdu.EventID()); err == nil {
			f.log.Info("backfilled PDU has a verdict already", "event_id", v.EventID, "verdict", v.Verdict)
			continue
		}
		inBatch[cp.pdu.EventID()] = true
		pdus = append(pdus, cp.pdu)
	}
	if len(pdus) == 0 {
		return 0, nil
	}
	// Checked like a gap's events (gaps.go): against the state before
	// each, not only its auth events.
	b, err := f.prepareBatch(ctx, server, room, ver, earliest.EventID, pdus, nil)
	if err != nil {
		return 0, err
	}
	added := 0
	err = f.db.WriteTx(ctx, func(tx *storage.Tx) error {
		added = 0
		var keep []gomatrixserverlib.PDU
		if err := b.check(ctx, tx, func(p gomatrixserverlib.PDU, _ storage.StateMap) error {
			keep = append(keep, p)
			return nil
		}); err != nil {
			return err
		}
		// Newest first, so that older events take lower positions.
		for i := len(keep) - 1; i >= 0; i-- {
			ok, err := tx.StoreBackfilled(ctx, rooms.EventRow(keep[i], f.nowMS()))
			if err != nil {
				return err
			}
			if ok {
				added++
			}
		}
		return nil
	})
	return added, err
}
