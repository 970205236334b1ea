package sync

import (
	"context"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// ReceiptStore is what the receipts stream reads.
type ReceiptStore interface {
	ReceiptsBetween(ctx context.Context, roomID string, after, upto int64) ([]storage.Receipt, error)
}

// receiptsStream is m.receipt in each joined room's ephemeral section
// (spec: Client-Server API, "Receipts").
type receiptsStream struct {
	store ReceiptStore
	notes Notifier
}

func (s *receiptsStream) ID() StreamID { return StreamReceipts }

func (s *receiptsStream) Latest(_ context.Context, committed int64) int64 { return committed }

func (s *receiptsStream) Fill(ctx context.Context, req *Request, from, to int64) (int64, bool, error) {
	from = min(from, to)
	news := false
	for i := range req.rooms {
		r, id := &req.rooms[i], req.rooms[i].id
		after := from
		if r.fresh {
			after = 0
		} else if from >= s.notes.LastFor(id) {
			continue // nothing written to the room past the token
		}
		rs, err := s.store.ReceiptsBetween(ctx, id, after, to)
		if err != nil {
			return 0, false, err
		}
		if len(rs) == 0 {
			continue
		}
		r.jr.Ephemeral.Events = append(r.jr.Ephemeral.Events, map[string]any{"type": "m.receipt", "content": ReceiptContent(rs)})
		r.has = true
		req.include(id, r.jr)
		news = true
	}
	return to, news, nil
}

// ReceiptContent groups receipts as m.receipt content:
// {event_id: {receipt_type: {user_id: {ts, thread_id?}}}}.
func ReceiptContent(rs []storage.Receipt) map[string]any {
	out := map[string]any{}
	for _, r := range rs {
		byType, _ := out[r.EventID].(map[string]any)
		if byType == nil {
			byType = map[string]any{}
			out[r.EventID] = byType
		}
		byUser, _ := byType[r.Type].(map[string]any)
		if byUser == nil {
			byUser = map[string]any{}
			byType[r.Type] = byUser
		}
		entry := map[string]any{"ts": r.TS}
		if r.ThreadID != "" {
			entry["thread_id"] = r.ThreadID
		}
		byUser[r.UserID] = entry
	}
	return out
}
