package sync

import (
	"context"
	"sort"
	"time"
)

// PresenceStore is what the presence stream reads.
type PresenceStore interface {
	UsersSharingRooms(ctx context.Context, userID string) ([]string, error)
}

// presenceStream is m.presence of the user and of the users sharing a
// room with them (spec: Client-Server API, "Presence").
type presenceStream struct {
	store   PresenceStore
	eph     Ephemeral
	scanner PresenceScanner
	now     func() time.Time
}

func (s *presenceStream) ID() StreamID { return StreamPresence }

func (s *presenceStream) Latest(ctx context.Context, _ int64) int64 {
	return s.scanner.ScanPresence(ctx)
}

func (s *presenceStream) Fill(ctx context.Context, req *Request, from, to int64) (int64, bool, error) {
	changed := s.eph.PresenceSince(from, func(string) bool { return true })
	if len(changed) == 0 {
		return to, false, nil
	}
	var set map[string]bool
	if _, mine := changed[req.UserID]; len(changed) > 1 || !mine {
		// Only then is the query of who shares a room with us needed.
		shared, err := s.store.UsersSharingRooms(ctx, req.UserID)
		if err != nil {
			return 0, false, err
		}
		set = make(map[string]bool, len(shared))
		for _, u := range shared {
			set[u] = true
		}
	}
	users := make([]string, 0, len(changed))
	for u := range changed {
		if u == req.UserID || set[u] {
			users = append(users, u)
		}
	}
	sort.Strings(users)
	now := s.now()
	for _, u := range users {
		req.Response.Presence.Events = append(req.Response.Presence.Events,
			map[string]any{"type": "m.presence", "sender": u, "content": PresenceContent(changed[u], now)})
	}
	return to, len(users) > 0, nil
}
