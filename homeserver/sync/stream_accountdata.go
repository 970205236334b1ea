package sync

import (
	"context"
	"encoding/json"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// AccountDataStore is what the account data stream reads.
type AccountDataStore interface {
	AccountDataBetween(ctx context.Context, userID string, after, upto int64) ([]storage.AccountData, error)
}

// pushRulesType is the account data type of push rules.
const pushRulesType = "m.push_rules"

// accountDataStream is global and per-room account data (spec:
// Client-Server API, "Client Config").
type accountDataStream struct {
	store AccountDataStore
	notes Notifier
	rules PushRules
}

func (s *accountDataStream) ID() StreamID { return StreamAccountData }

func (s *accountDataStream) Latest(_ context.Context, committed int64) int64 { return committed }

func (s *accountDataStream) Fill(ctx context.Context, req *Request, from, to int64) (int64, bool, error) {
	from = min(from, to)
	initial := req.Initial()
	var ad []storage.AccountData
	if initial || from < s.notes.LastFor(storage.KeyAccountData(req.UserID)) {
		var err error
		if ad, err = s.store.AccountDataBetween(ctx, req.UserID, from, to); err != nil {
			return 0, false, err
		}
	}
	news := false
	resp := req.Response
	for _, a := range ad {
		ev := map[string]any{"type": a.Type, "content": json.RawMessage(a.Content)}
		if a.RoomID == "" {
			resp.AccountData.Events = append(resp.AccountData.Events, ev)
			news = true
		} else if jr := resp.Rooms.Join[a.RoomID]; jr != nil {
			jr.AccountData.Events = append(jr.AccountData.Events, ev)
		} else if joinedTo(req.Memberships, a.RoomID) && req.Filter.WantsRoom(a.RoomID) {
			jr := NewJoinedRoom()
			jr.AccountData.Events = append(jr.AccountData.Events, ev)
			req.include(a.RoomID, jr)
			news = true
		}
	}
	// Every user has push rules, stored or not: an initial sync carries
	// the defaults until the user changes one.
	if initial && !HasGlobal(ad, pushRulesType) {
		rules, err := s.rules.PushRulesContent(ctx, req.UserID)
		if err != nil {
			return 0, false, err
		}
		resp.AccountData.Events = append(resp.AccountData.Events, map[string]any{"type": pushRulesType, "content": rules})
	}
	return to, news, nil
}

// HasGlobal reports whether ad holds global account data of evType.
func HasGlobal(ad []storage.AccountData, evType string) bool {
	for _, a := range ad {
		if a.RoomID == "" && a.Type == evType {
			return true
		}
	}
	return false
}

func joinedTo(ms []storage.RoomMembership, roomID string) bool {
	for _, m := range ms {
		if m.RoomID == roomID {
			return m.Membership == spec.Join
		}
	}
	return false
}
