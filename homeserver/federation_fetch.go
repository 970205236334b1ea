package homeserver

import (
	"context"
	"fmt"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// maxStateByID is how many unknown events fillPrevState fetches one by
// one with /event; with more it asks for the whole state with /state.
// A variable so that tests take both ways.
var maxStateByID = 50

// maxFetchedState bounds the events one fillPrevState takes in.
const maxFetchedState = 5000

// fillPrevState fetches a prev event of cp that we do not have, with the
// state before it, from origin (spec: Server-Server API, "Retrieving
// events": GET /state_ids, then the unknown events with GET /event, or
// GET /state when many are unknown). Every fetched event is checked
// (hash, signatures, room, and auth against its own auth events) and
// stored as an outlier; the prev event carries the state after it, so
// cp's state can be computed.
func (f *federation) fillPrevState(ctx context.Context, origin string, cp *checkedPDU, prevID string) error {
	server := spec.ServerName(origin)
	roomID := cp.room.RoomID
	txn, err := f.client.GetEvent(ctx, f.origin(), server, prevID)
	if err != nil {
		return fmt.Errorf("%w: event %s: %v", ErrFederation, prevID, err)
	}
	if len(txn.PDUs) != 1 {
		return fmt.Errorf("%w: /event answered %d PDUs", ErrBadPDU, len(txn.PDUs))
	}
	prev, err := f.checkArrived(ctx, txn.PDUs[0], roomID, arrivedPulled)
	if err != nil {
		return err
	}
	if prev.pdu.EventID() != prevID {
		return fmt.Errorf("%w: /event answered %s for %s", ErrBadPDU, prev.pdu.EventID(), prevID)
	}
	ids, err := f.client.LookupStateIDs(ctx, f.origin(), server, roomID, prevID)
	if err != nil {
		return fmt.Errorf("%w: state_ids: %v", ErrFederation, err)
	}
	if len(ids.StateEventIDs)+len(ids.AuthEventIDs) > maxFetchedState {
		return fmt.Errorf("%w: state_ids names more than %d events", ErrBadPDU, maxFetchedState)
	}
	want := append(append([]string{}, ids.StateEventIDs...), ids.AuthEventIDs...)
	want = append(want, prev.pdu.AuthEventIDs()...)
	need, err := f.unknownEvents(ctx, dedupe(want))
	if err != nil {
		return err
	}
	fetched, err := f.fetchEvents(ctx, server, cp.room, prevID, need)
	if err != nil {
		return err
	}
	return f.s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		l := &pduLoader{f: f, tx: tx, ver: cp.ver, m: make(map[string]gomatrixserverlib.PDU)}
		if err := l.storeOutliers(ctx, fetched, f.s.nowMS()); err != nil {
			return err
		}
		states, err := l.load(ctx, ids.StateEventIDs)
		if err != nil {
			return err
		}
		if len(states) != len(dedupe(ids.StateEventIDs)) {
			return fmt.Errorf("%w: state_ids names events that were not served", ErrBadPDU)
		}
		before := storage.StateMap{}
		for _, p := range states {
			if p.StateKey() == nil || p.RoomID().String() != roomID {
				return fmt.Errorf("%w: state_ids names %s, not a state event of the room", ErrBadPDU, p.EventID())
			}
			before[storage.StateKey{Type: p.Type(), StateKey: *p.StateKey()}] = p.EventID()
		}
		if err := l.authAgainst(ctx, prev.pdu, before); err != nil {
			return reject("the served state refuses %s: %v", prevID, err)
		}
		if err := l.allowedByOwnAuth(ctx, prev.pdu); err != nil {
			return err
		}
		return tx.StoreOutlierWithState(ctx, eventRow(prev.pdu, f.s.nowMS()), before)
	})
}

// fetchEvents fetches and checks events of room from server: one by one
// with /event when few, else through /state at atEvent.
func (f *federation) fetchEvents(ctx context.Context, server spec.ServerName, room storage.Room, atEvent string, ids []string) ([]gomatrixserverlib.PDU, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	wanted := make(map[string]bool, len(ids))
	for _, id := range ids {
		wanted[id] = true
	}
	var raws [][]byte
	if len(ids) <= maxStateByID {
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
		cp, err := f.checkArrived(ctx, raw, room.RoomID, arrivedPulled)
		if err != nil {
			return nil, err
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

// storeOutliers auth-checks fetched events against their own auth
// events, oldest first (an event's auth events come before it), and
// stores them as outliers.
func (l *pduLoader) storeOutliers(ctx context.Context, pdus []gomatrixserverlib.PDU, nowMS int64) error {
	sort.SliceStable(pdus, func(i, j int) bool { return pdus[i].Depth() < pdus[j].Depth() })
	for _, p := range pdus {
		l.m[p.EventID()] = p
	}
	for _, p := range pdus {
		if err := l.allowedByOwnAuth(ctx, p); err != nil {
			return err
		}
		if err := l.tx.StoreOutlier(ctx, eventRow(p, nowMS)); err != nil {
			return err
		}
	}
	return nil
}

// allowedByOwnAuth checks p against its auth events, which must be known
// and not rejected (spec: "Checks performed on receipt of a PDU", 4).
func (l *pduLoader) allowedByOwnAuth(ctx context.Context, p gomatrixserverlib.PDU) error {
	authIDs := p.AuthEventIDs()
	for _, a := range authIDs {
		if v, err := l.tx.EventVerdict(ctx, a); err == nil && v.Verdict == storage.VerdictRejected {
			return reject("auth event %s was rejected", a)
		}
	}
	auth, err := l.load(ctx, authIDs)
	if err != nil {
		return err
	}
	if len(auth) != len(authIDs) {
		return fmt.Errorf("%w: unknown auth events of %s", ErrBadPDU, p.EventID())
	}
	provider, err := gomatrixserverlib.NewAuthEvents(auth)
	if err != nil {
		return reject("%v", err)
	}
	if err := gomatrixserverlib.Allowed(p, provider, userIDForSender); err != nil {
		return reject("auth events refuse %s: %v", p.EventID(), err)
	}
	return nil
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
