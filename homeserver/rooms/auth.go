package rooms

import (
	"context"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Auth rules (spec: Room Versions, "Authorization rules"), as the steps of
// "Checks performed on receipt of a PDU" apply them.

// AllowedByOwnAuth is step 4: p against its own auth events, which must
// be known (else ErrBadEvent) and not rejected (else ErrRejected, as is a
// refusal by them).
func (l *Loader) AllowedByOwnAuth(ctx context.Context, tx *storage.Tx, p gomatrixserverlib.PDU) error {
	authIDs := p.AuthEventIDs()
	for _, a := range authIDs {
		if v, err := tx.EventVerdict(ctx, a); err == nil && v.Verdict == storage.VerdictRejected {
			return refuse(ErrRejected, "auth event %s was rejected", a)
		}
	}
	auth, err := l.Load(ctx, authIDs)
	if err != nil {
		return err
	}
	if len(auth) != len(authIDs) {
		return refuse(ErrBadEvent, "unknown auth events of %s", p.EventID())
	}
	provider, err := gomatrixserverlib.NewAuthEvents(auth)
	if err != nil {
		return refuse(ErrRejected, "%v", err)
	}
	if err := gomatrixserverlib.Allowed(p, provider, UserIDForSender); err != nil {
		return refuse(ErrRejected, "auth events refuse %s: %v", p.EventID(), err)
	}
	return nil
}

// AuthAgainst is step 5 (and 6, with the current state): pdu against the
// auth events a state map holds. The library's error is returned as it
// is; the caller decides what a refusal means.
func (l *Loader) AuthAgainst(ctx context.Context, pdu gomatrixserverlib.PDU, state storage.StateMap) error {
	needed := gomatrixserverlib.StateNeededForAuth([]gomatrixserverlib.PDU{pdu})
	var ids []string
	for _, t := range needed.Tuples() {
		if id, ok := state[storage.StateKey{Type: t.EventType, StateKey: t.StateKey}]; ok {
			ids = append(ids, id)
		}
	}
	pdus, err := l.Load(ctx, ids)
	if err != nil {
		return err
	}
	provider, err := gomatrixserverlib.NewAuthEvents(pdus)
	if err != nil {
		return err
	}
	return gomatrixserverlib.Allowed(pdu, provider, UserIDForSender)
}

// AllowedByList checks pdu against the auth events found among events
// (a send_join answer's state, before anything is stored).
func AllowedByList(pdu gomatrixserverlib.PDU, events []gomatrixserverlib.PDU) error {
	needed := gomatrixserverlib.StateNeededForAuth([]gomatrixserverlib.PDU{pdu})
	want := map[storage.StateKey]bool{}
	for _, t := range needed.Tuples() {
		want[storage.StateKey{Type: t.EventType, StateKey: t.StateKey}] = true
	}
	var auth []gomatrixserverlib.PDU
	for _, e := range events {
		if e.StateKey() != nil && want[storage.StateKey{Type: e.Type(), StateKey: *e.StateKey()}] {
			auth = append(auth, e)
		}
	}
	provider, err := gomatrixserverlib.NewAuthEvents(auth)
	if err != nil {
		return err
	}
	return gomatrixserverlib.Allowed(pdu, provider, UserIDForSender)
}

// StoreOutliers checks fetched events against their own auth events
// (step 4), oldest first (an event's auth events come before it), and
// stores them as outliers: events we hold without placing them in the
// timeline.
func (l *Loader) StoreOutliers(ctx context.Context, tx *storage.Tx, pdus []gomatrixserverlib.PDU, nowMS int64) error {
	sortByDepth(pdus)
	for _, p := range pdus {
		l.Add(p)
	}
	for _, p := range pdus {
		if err := l.AllowedByOwnAuth(ctx, tx, p); err != nil {
			return err
		}
		if err := tx.StoreOutlier(ctx, EventRow(p, nowMS)); err != nil {
			return err
		}
	}
	return nil
}

func sortByDepth(pdus []gomatrixserverlib.PDU) {
	sort.SliceStable(pdus, func(i, j int) bool { return pdus[i].Depth() < pdus[j].Depth() })
}
