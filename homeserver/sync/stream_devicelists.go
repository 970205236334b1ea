package sync

import (
	"context"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// DeviceListStore is what the device list stream reads.
type DeviceListStore interface {
	DeviceListChangesBetween(ctx context.Context, after, upto int64) ([]string, error)
	MemberEventsInRooms(ctx context.Context, roomIDs []string, after, upto int64) ([]storage.Event, error)
	UsersSharingRooms(ctx context.Context, userID string) ([]string, error)
	Members(ctx context.Context, roomID, membership string) ([]string, error)
	SyncKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, []string, error)
}

// deviceListStream is the end-to-end encryption part of /sync (spec:
// Client-Server API, "End-to-End Encryption", extensions to /sync):
// device_lists, and the device's one-time and fallback key counts, which
// every response carries.
type deviceListStream struct {
	store DeviceListStore
	notes Notifier
}

func (s *deviceListStream) ID() StreamID { return StreamDeviceLists }

func (s *deviceListStream) Latest(_ context.Context, committed int64) int64 { return committed }

func (s *deviceListStream) Fill(ctx context.Context, req *Request, from, to int64) (int64, bool, error) {
	from = min(from, to)
	news := false
	if !req.Initial() {
		dl, err := DeviceListChanges(ctx, s.store, s.notes, req.UserID, req.Memberships, from, to)
		if err != nil {
			return 0, false, err
		}
		if len(dl.Changed) > 0 || len(dl.Left) > 0 {
			req.Response.DeviceLists = dl
			news = true
		}
	}
	counts, fallback, err := s.store.SyncKeyCounts(ctx, req.UserID, req.DeviceID)
	if err != nil {
		return 0, false, err
	}
	for alg, n := range counts {
		req.Response.OTKCounts[alg] = n
	}
	req.Response.Fallback = append(req.Response.Fallback, fallback...)
	return to, news, nil
}

// DeviceListChanges computes device_lists (spec: "Tracking the device
// list for a user"): changed holds users sharing a room with userID whose
// devices changed, and users who newly share a room with them; left holds
// users who no longer share any room. Sliding sync's e2ee extension
// (MSC3884) shares it.
func DeviceListChanges(ctx context.Context, store DeviceListStore, notes Notifier, userID string, memberships []storage.RoomMembership, after, upto int64) (*DeviceLists, error) {
	dl := &DeviceLists{Changed: []string{}, Left: []string{}}
	// Rooms whose membership may have moved in the window: the ones we are
	// in, and the ones we left in it.
	var rooms []string
	stale := after < notes.LastFor(storage.KeyDeviceLists)
	for _, m := range memberships {
		if m.Membership == spec.Join || m.Pos > after {
			rooms = append(rooms, m.RoomID)
			stale = stale || after < notes.LastFor(storage.KeyMembers(m.RoomID))
		}
	}
	if !stale {
		return dl, nil
	}
	changed, err := store.DeviceListChangesBetween(ctx, after, upto)
	if err != nil {
		return nil, err
	}
	memberEvs, err := store.MemberEventsInRooms(ctx, rooms, after, upto)
	if err != nil {
		return nil, err
	}
	if len(changed) == 0 && len(memberEvs) == 0 {
		return dl, nil
	}
	shared, err := store.UsersSharingRooms(ctx, userID)
	if err != nil {
		return nil, err
	}
	sharedSet := make(map[string]bool, len(shared))
	for _, u := range shared {
		sharedSet[u] = true
	}
	inChanged, inLeft := map[string]bool{}, map[string]bool{}
	addChanged := func(u string) {
		if !inChanged[u] {
			inChanged[u] = true
			dl.Changed = append(dl.Changed, u)
		}
	}
	addLeft := func(u string) {
		if !inLeft[u] {
			inLeft[u] = true
			dl.Left = append(dl.Left, u)
		}
	}
	for _, u := range changed {
		if sharedSet[u] && u != userID {
			addChanged(u)
		}
	}
	for _, e := range memberEvs {
		target := *e.StateKey
		switch membershipOf(e) {
		case spec.Join:
			if target != userID {
				if sharedSet[target] {
					addChanged(target)
				}
				continue
			}
			// We joined: everyone in the room is new to us.
			members, err := store.Members(ctx, e.RoomID, spec.Join)
			if err != nil {
				return nil, err
			}
			for _, u := range members {
				if u != userID {
					addChanged(u)
				}
			}
		case spec.Leave, spec.Ban:
			if target != userID {
				if !sharedSet[target] {
					addLeft(target)
				}
				continue
			}
			members, err := store.Members(ctx, e.RoomID, spec.Join)
			if err != nil {
				return nil, err
			}
			for _, u := range members {
				if !sharedSet[u] {
					addLeft(u)
				}
			}
		}
	}
	return dl, nil
}
