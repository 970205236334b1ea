package rooms

import (
	"context"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Resolve runs state resolution over several state sets (spec: Room
// Version 2 and later, "State resolution": v2 for every version we
// support). Equal sets resolve to themselves without loading anything.
func (l *Loader) Resolve(ctx context.Context, sets []storage.StateMap) (storage.StateMap, error) {
	conflict := false
	for _, s := range sets[1:] {
		if !SameState(s, sets[0]) {
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
	pdus, err := l.Load(ctx, ids)
	if err != nil {
		return nil, err
	}
	auth, err := l.AuthChain(ctx, pdus)
	if err != nil {
		return nil, err
	}
	resolved, err := gomatrixserverlib.ResolveConflicts(l.ver.Version(), pdus, auth, UserIDForSender, func(string) bool { return false })
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
