package federation

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Gaps in the middle of a timeline (spec: Client-Server API, "Syncing":
// a limited timeline with prev_batch; Server-Server API, "Backfilling and
// retrieving missing events").
//
// A timeline event whose prev events we do not hold (we rejoined a room
// after missing its history, or an outage outlasted get_missing_events)
// starts a gap just before it. /sync cuts a timeline at the latest gap it
// spans and says limited, with a prev_batch that leads into the gap.
// Paginating /messages backwards through the gap fetches it with
// /backfill from the room's servers (each PDU checked as on every pulled
// arrival), stores the events as outliers listed in DAG order, and serves
// them between the gap's event and what came before. A token inside a gap
// is "g<pos>_<n>": the first n events of the gap at pos are still to come
// (n = 0: the gap is done, go on below pos).
//
// Forward pagination (dir=f) and /context read stream positions only and
// pass over a gap: the gap's events are outliers without a position of
// their own (they read as sitting just before the gap's event), and a
// client that scrolls up reaches them with dir=b, which is what a
// limited /sync's prev_batch leads to.

// A gap that could not be filled is not asked for again before
// gapRetryFirst, then twice as long after each failure, up to gapRetryMax;
// pagination meanwhile passes over it (as it does over a gap that
// /backfill finds empty).
const (
	gapRetryFirst = 30 * time.Second
	gapRetryMax   = 30 * time.Minute
)

// gapBackoff is the per-gap retry schedule, in memory (a restart retries
// at once).
type gapBackoff struct {
	mu sync.Mutex
	m  map[string]gapRetry
}

type gapRetry struct {
	next time.Time
	wait time.Duration
}

// due reports whether gap may be asked for at now.
func (b *gapBackoff) due(gap string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.m[gap]
	return !ok || !now.Before(r.next)
}

// failed notes a failed fill of gap at now.
func (b *gapBackoff) failed(gap string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil || len(b.m) > 10000 {
		b.m = make(map[string]gapRetry)
	}
	wait := gapRetryFirst
	if r, ok := b.m[gap]; ok {
		wait = min(2*r.wait, gapRetryMax)
	}
	b.m[gap] = gapRetry{next: now.Add(wait), wait: wait}
	return wait
}

// done forgets gap's schedule.
func (b *gapBackoff) done(gap string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, gap)
}

// maxGapRounds bounds the /backfill requests one gap fill makes.
const maxGapRounds = 5

// noteGap records a gap before eventID when some of its prev events are
// not in the room's timeline and the room has earlier timeline events
// (the start of a timeline is Backfill's business). Failures are
// logged: a gap not noted is what happened before gaps were noted.
func (f *Service) noteGap(ctx context.Context, roomID, eventID string) {
	if err := f.noteGapErr(ctx, roomID, eventID); err != nil {
		f.log.Info("timeline gap not recorded", "room_id", roomID, "event_id", eventID, "err", err)
	}
}

func (f *Service) noteGapErr(ctx context.Context, roomID, eventID string) error {
	e, err := f.db.Event(ctx, eventID)
	if err != nil || e.Outlier || e.RoomID != roomID {
		return err
	}
	room, err := f.db.Room(ctx, roomID)
	if err != nil {
		return err
	}
	p, err := rooms.ParseIn(room.Version, e)
	if err != nil {
		return err
	}
	prevs := p.PrevEventIDs()
	known, err := f.db.Events(ctx, prevs)
	if err != nil {
		return err
	}
	inTimeline := 0
	for _, k := range known {
		if !k.Outlier {
			inTimeline++
		}
	}
	if inTimeline == len(prevs) {
		return nil
	}
	earlier, err := f.db.Messages(ctx, roomID, e.Pos, true, math.MinInt64, 1)
	if err != nil || len(earlier) == 0 {
		return err
	}
	f.log.Debug("timeline gap", "room_id", roomID, "event_id", eventID)
	return f.db.WriteTx(ctx, func(tx *storage.Tx) error {
		return tx.RecordGap(ctx, storage.Gap{EventID: eventID, RoomID: roomID, Pos: e.Pos, PrevIDs: prevs})
	})
}

// fillGap fetches the events of gap g with /backfill from the room's
// servers, back to events already in our timeline, and records them.
func (f *Service) fillGap(ctx context.Context, g storage.Gap) error {
	room, err := f.db.Room(ctx, g.RoomID)
	if err != nil {
		return err
	}
	servers, err := f.roomServers(ctx, g.RoomID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	var lastErr error
	tried := 0
	for _, server := range servers {
		if server == f.serverName || tried == 3 {
			continue
		}
		tried++
		ids, err := f.backfillGap(ctx, spec.ServerName(server), room, g)
		if err != nil {
			f.log.Info("gap backfill failed", "room_id", g.RoomID, "server", server, "err", err)
			lastErr = err
			continue
		}
		return f.db.WriteTx(ctx, func(tx *storage.Tx) error { return tx.FillGap(ctx, g.EventID, ids) })
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("%w: no server to fill the gap from", ErrFederation)
	}
	return lastErr
}

// backfillGap walks back from the gap's prev events through /backfill
// until it meets events of our timeline, checks each PDU (hash,
// signatures, auth against its auth events, fetched when unknown), stores
// the accepted ones as outliers and returns their IDs oldest first.
func (f *Service) backfillGap(ctx context.Context, server spec.ServerName, room storage.Room, g storage.Gap) ([]string, error) {
	gapEvent, err := f.db.Event(ctx, g.EventID)
	if err != nil {
		return nil, err
	}
	found := map[string]gomatrixserverlib.PDU{}
	frontier := g.PrevIDs
	for round := 0; round < maxGapRounds && len(frontier) > 0; round++ {
		txn, err := f.client.Backfill(ctx, f.origin(), server, room.RoomID, maxServedEvents, frontier)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrFederation, err)
		}
		var next []string
		var fresh []gomatrixserverlib.PDU
		for _, raw := range txn.PDUs {
			cp, err := f.checkArrived(ctx, raw, room.RoomID, rooms.Pulled)
			if err != nil {
				f.log.Info("gap PDU refused", "server", server, "room_id", room.RoomID, "err", err)
				continue
			}
			if _, ok := found[cp.pdu.EventID()]; ok || cp.pdu.Depth() >= gapEvent.Depth {
				continue // not before the gap's event: /backfill only reaches back
			}
			if e, err := f.db.Event(ctx, cp.pdu.EventID()); err == nil && !e.Outlier {
				continue // reached our timeline
			}
			if _, err := f.db.EventVerdict(ctx, cp.pdu.EventID()); err == nil {
				continue
			}
			found[cp.pdu.EventID()] = cp.pdu
			fresh = append(fresh, cp.pdu)
		}
		if len(fresh) == 0 {
			break
		}
		// Continue from the prev events of what came that are neither
		// here nor in our timeline.
		for _, p := range fresh {
			for _, prev := range p.PrevEventIDs() {
				if _, ok := found[prev]; ok {
					continue
				}
				if e, err := f.db.Event(ctx, prev); err == nil && !e.Outlier {
					continue
				}
				next = append(next, prev)
			}
		}
		frontier = dedupe(next)
	}
	pdus := make([]gomatrixserverlib.PDU, 0, len(found))
	for _, p := range found {
		pdus = append(pdus, p)
	}
	if len(pdus) == 0 {
		return nil, nil
	}
	ver, err := rooms.Version(room.Version)
	if err != nil {
		return nil, err
	}
	// Where the state before a gap event cannot be worked out (a prev
	// event neither in the gap nor in our timeline), the state before the
	// gap's own event stands for it (what the room's server told us at
	// the end of the gap); history visibility reads it.
	fallback, err := f.db.Snapshot(ctx, gapEvent.SnapBefore)
	if err != nil {
		return nil, err
	}
	b, err := f.prepareBatch(ctx, server, room, ver, g.EventID, pdus, fallback)
	if err != nil {
		return nil, err
	}
	var ids []string
	err = f.db.WriteTx(ctx, func(tx *storage.Tx) error {
		ids = nil
		return b.check(ctx, tx, func(p gomatrixserverlib.PDU, before storage.StateMap) error {
			ids = append(ids, p.EventID())
			return tx.StoreOutlierWithState(ctx, rooms.EventRow(p, f.nowMS()), before)
		})
	})
	return ids, err
}

// maxBoundaryStates bounds the /state_ids requests one backfilled batch
// makes for prev events outside it whose state we do not hold.
const maxBoundaryStates = 3

// pulledBatch is a batch of PDUs pulled with /backfill (into a gap, or
// before the start of our timeline), each already checked on arrival
// (hash, signatures, room), in topological order, with what checking
// them needs.
type pulledBatch struct {
	f    *Service
	room storage.Room
	ver  gomatrixserverlib.IRoomVersion
	pdus []gomatrixserverlib.PDU
	// auth are the batch's auth events we lacked, fetched.
	auth []gomatrixserverlib.PDU
	// boundary is the state after prev events outside the batch that we
	// do not hold with state, learnt from the server with /state_ids.
	boundary map[string]storage.StateMap
	// fallback stands for the state before an event whose prev events'
	// state is unknown (nil: none; the event is then checked against its
	// auth events only).
	fallback storage.StateMap
}

// prepareBatch orders pdus topologically, fetches the auth events the
// batch lacks, and learns the state after the prev events at its edge
// (spec: Server-Server API, "Checks performed on receipt of a PDU": the
// state before an event whose prev events we lack is asked for with
// /state_ids). All the network requests happen here, before a write.
func (f *Service) prepareBatch(ctx context.Context, server spec.ServerName, room storage.Room, ver gomatrixserverlib.IRoomVersion,
	atEvent string, pdus []gomatrixserverlib.PDU, fallback storage.StateMap) (*pulledBatch, error) {
	b := &pulledBatch{f: f, room: room, ver: ver, pdus: topoOrder(pdus), fallback: fallback, boundary: map[string]storage.StateMap{}}
	inBatch := make(map[string]bool, len(pdus))
	for _, p := range pdus {
		inBatch[p.EventID()] = true
	}
	var authIDs, edge []string
	for _, p := range b.pdus {
		for _, a := range p.AuthEventIDs() {
			if !inBatch[a] {
				authIDs = append(authIDs, a)
			}
		}
		for _, prev := range p.PrevEventIDs() {
			if !inBatch[prev] {
				edge = append(edge, prev)
			}
		}
	}
	need, err := f.unknownEvents(ctx, dedupe(authIDs))
	if err != nil {
		return nil, err
	}
	if len(need) > maxBackfillAuth {
		return nil, fmt.Errorf("%w: backfill needs %d unknown auth events", ErrBadPDU, len(need))
	}
	if b.auth, err = f.fetchEvents(ctx, server, room, atEvent, need); err != nil {
		return nil, err
	}
	fetches := 0
	for _, prev := range dedupe(edge) {
		if e, err := f.db.Event(ctx, prev); err == nil && !e.Outlier && e.SnapAfter != 0 {
			continue // gapStateBefore reads it from our timeline
		}
		if fetches == maxBoundaryStates {
			f.log.Info("backfill: state before an event not learnt", "room_id", room.RoomID, "prev_event_id", prev)
			continue
		}
		fetches++
		st, err := f.remoteStateAfter(ctx, server, room, ver, prev)
		if err != nil {
			f.log.Info("backfill: state at prev event not learnt", "room_id", room.RoomID, "prev_event_id", prev, "err", err)
			continue
		}
		b.boundary[prev] = st
	}
	return b, nil
}

// remoteStateAfter learns the state after the event prevID from server
// (GET /state_ids at it, the unknown events with /event or /state), checks
// prevID against the state before it, and stores the fetched events as
// outliers.
func (f *Service) remoteStateAfter(ctx context.Context, server spec.ServerName, room storage.Room, ver gomatrixserverlib.IRoomVersion, prevID string) (storage.StateMap, error) {
	ids, err := f.client.LookupStateIDs(ctx, f.origin(), server, room.RoomID, prevID)
	if err != nil {
		return nil, fmt.Errorf("%w: state_ids: %v", ErrFederation, err)
	}
	if len(ids.StateEventIDs)+len(ids.AuthEventIDs) > maxFetchedState {
		return nil, fmt.Errorf("%w: state_ids names more than %d events", ErrBadPDU, maxFetchedState)
	}
	want := append(append([]string{prevID}, ids.StateEventIDs...), ids.AuthEventIDs...)
	need, err := f.unknownEvents(ctx, dedupe(want))
	if err != nil {
		return nil, err
	}
	fetched, err := f.fetchEvents(ctx, server, room, prevID, need)
	if err != nil {
		return nil, err
	}
	var after storage.StateMap
	err = f.db.WriteTx(ctx, func(tx *storage.Tx) error {
		l := f.rooms.TxLoader(tx, ver)
		before, err := f.servedState(ctx, tx, l, fetched, room.RoomID, ids.StateEventIDs)
		if err != nil {
			return err
		}
		prev, err := l.Load(ctx, []string{prevID})
		if err != nil {
			return err
		}
		if len(prev) != 1 {
			return fmt.Errorf("%w: %s not served", ErrBadPDU, prevID)
		}
		if err := l.AuthAgainst(ctx, prev[0], before); err != nil {
			return reject("the served state refuses %s: %v", prevID, err)
		}
		after = before
		if sk := prev[0].StateKey(); sk != nil {
			after = rooms.CloneState(before)
			after[storage.StateKey{Type: prev[0].Type(), StateKey: *sk}] = prevID
		}
		return nil
	})
	return after, err
}

// check runs, in tx, the checks the spec's "Checks performed on receipt
// of a PDU" asks of a pulled event, in the batch's order: step 4, auth
// against its own auth events; step 5, auth against the state before it
// (from the batch, our timeline, the batch's edge learnt from the server,
// else the fallback). Soft failure (step 6, the current state) is for new
// events, not history pulled with /backfill. Each accepted event is
// handed to keep with the state before it (nil when unknown); refused
// ones get a rejected verdict.
func (b *pulledBatch) check(ctx context.Context, tx *storage.Tx, keep func(gomatrixserverlib.PDU, storage.StateMap) error) error {
	f := b.f
	l := f.rooms.TxLoader(tx, b.ver)
	if err := l.StoreOutliers(ctx, tx, b.auth, f.nowMS()); err != nil {
		return pduRefusal(err)
	}
	for _, p := range b.pdus {
		l.Add(p)
	}
	after := map[string]storage.StateMap{}
	for id, st := range b.boundary {
		after[id] = st
	}
	var rejected []storage.Verdict
	refuse := func(p gomatrixserverlib.PDU, err error) {
		rejected = append(rejected, storage.Verdict{EventID: p.EventID(), RoomID: b.room.RoomID,
			Verdict: storage.VerdictRejected, Reason: err.Error(), ReceivedTS: f.nowMS()})
	}
	for _, p := range b.pdus {
		if err := l.AllowedByOwnAuth(ctx, tx, p); err != nil {
			if !errors.Is(err, rooms.ErrRejected) {
				return pduRefusal(err)
			}
			refuse(p, pduRefusal(err))
			continue
		}
		before, known, err := gapStateBefore(ctx, tx, l, p, after)
		if err != nil {
			return err
		}
		if known {
			if err := l.AuthAgainst(ctx, p, before); err != nil {
				refuse(p, reject("state before it refuses it: %v", err))
				continue
			}
			st := before
			if p.StateKey() != nil {
				st = rooms.CloneState(before)
				st[storage.StateKey{Type: p.Type(), StateKey: *p.StateKey()}] = p.EventID()
			}
			after[p.EventID()] = st
		} else {
			before = b.fallback
		}
		if err := keep(p, before); err != nil {
			return err
		}
	}
	for _, v := range rejected {
		if err := tx.RecordVerdict(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

// topoOrder orders pdus so that each comes after its prev events within
// the batch (Kahn's algorithm), the lowest depth, then event ID, first
// among those ready. Spec: Client-Server API, "GET /messages" returns
// events in topological order where stream order cannot be trusted.
func topoOrder(pdus []gomatrixserverlib.PDU) []gomatrixserverlib.PDU {
	byID := make(map[string]gomatrixserverlib.PDU, len(pdus))
	for _, p := range pdus {
		byID[p.EventID()] = p
	}
	waiting := make(map[string]int, len(byID))
	next := make(map[string][]string)
	for id, p := range byID {
		for _, prev := range dedupe(p.PrevEventIDs()) {
			if _, ok := byID[prev]; ok && prev != id {
				waiting[id]++
				next[prev] = append(next[prev], id)
			}
		}
	}
	less := func(a, b gomatrixserverlib.PDU) bool {
		if a.Depth() != b.Depth() {
			return a.Depth() < b.Depth()
		}
		return a.EventID() < b.EventID()
	}
	var ready []gomatrixserverlib.PDU
	for id, p := range byID {
		if waiting[id] == 0 {
			ready = append(ready, p)
		}
	}
	out := make([]gomatrixserverlib.PDU, 0, len(byID))
	for len(ready) > 0 {
		sort.Slice(ready, func(i, j int) bool { return less(ready[i], ready[j]) })
		p := ready[0]
		ready = ready[1:]
		out = append(out, p)
		for _, n := range next[p.EventID()] {
			if waiting[n]--; waiting[n] == 0 {
				ready = append(ready, byID[n])
			}
		}
	}
	if len(out) < len(byID) {
		// A cycle (only a forged DAG has one): the rest by depth.
		var rest []gomatrixserverlib.PDU
		for id, p := range byID {
			if waiting[id] > 0 {
				rest = append(rest, p)
			}
		}
		sort.Slice(rest, func(i, j int) bool { return less(rest[i], rest[j]) })
		out = append(out, rest...)
	}
	return out
}

// gapStateBefore works out the state before a gap event from the state
// after its prev events: gap events already taken, or events of our
// timeline; several are resolved (state resolution v2). It reports false
// when a prev event is neither.
func gapStateBefore(ctx context.Context, tx *storage.Tx, l *rooms.Loader, p gomatrixserverlib.PDU, after map[string]storage.StateMap) (storage.StateMap, bool, error) {
	if len(p.PrevEventIDs()) == 0 {
		return storage.StateMap{}, true, nil // the room's creation: no state before it
	}
	var sets []storage.StateMap
	for _, prev := range p.PrevEventIDs() {
		if st, ok := after[prev]; ok {
			sets = append(sets, st)
			continue
		}
		e, err := tx.Event(ctx, prev)
		if errors.Is(err, storage.ErrNotFound) || err == nil && (e.Outlier || e.SnapAfter == 0) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		st, err := tx.Snapshot(ctx, e.SnapAfter)
		if err != nil {
			return nil, false, err
		}
		sets = append(sets, st)
	}
	if len(sets) == 0 {
		return nil, false, nil
	}
	st, err := l.Resolve(ctx, sets)
	if err != nil {
		return nil, false, err
	}
	return st, true, nil
}

// FillGap fills gap g with /backfill if it is not filled yet and its
// retry is due, for a client paginating into it; it reports whether the
// gap's events are stored. A failed fill is logged and retried no sooner
// than its backoff allows (pagination passes over the gap meanwhile).
func (f *Service) FillGap(ctx context.Context, g storage.Gap) bool {
	if g.Filled {
		return true
	}
	now := f.clock.Now()
	if !f.gapRetry.due(g.EventID, now) {
		return false
	}
	if err := f.fillGap(ctx, g); err != nil {
		wait := f.gapRetry.failed(g.EventID, now)
		f.log.Info("timeline gap not filled", "room_id", g.RoomID, "event_id", g.EventID, "retry_in", wait, "err", err)
		return false
	}
	f.gapRetry.done(g.EventID)
	return true
}
