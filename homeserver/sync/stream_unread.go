package sync

import (
	"context"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// UnreadStore is what the unread stream reads: the push notification
// counts of a user in a room (push rules decided them at write time).
type UnreadStore interface {
	UnreadCounts(ctx context.Context, userID, roomID string) (notifications, highlights int, err error)
}

// unreadStream fills each joined room's unread_notifications (spec:
// Client-Server API, "Receiving notifications"). It runs after the other
// room streams, since a room they bring gets its counts too.
type unreadStream struct {
	store UnreadStore
	notes Notifier
}

func (s *unreadStream) ID() StreamID { return StreamUnread }

func (s *unreadStream) Latest(_ context.Context, committed int64) int64 { return committed }

func (s *unreadStream) Fill(ctx context.Context, req *Request, from, to int64) (int64, bool, error) {
	from = min(from, to)
	news := false
	for i := range req.rooms {
		r, id := &req.rooms[i], req.rooms[i].id
		notified := !r.fresh && s.notes.LastFor(storage.KeyNotifications(req.UserID, id)) > from
		if !r.fresh && !r.has && !notified {
			continue
		}
		n, h, err := s.store.UnreadCounts(ctx, req.UserID, id)
		if err != nil {
			return 0, false, err
		}
		r.jr.UnreadNotifications["notification_count"], r.jr.UnreadNotifications["highlight_count"] = n, h
		// A new notification can only raise the counts or, when it is
		// already read (the invite a user has since joined through, say),
		// leave them as they were. A room that nothing else brings is
		// sent for it only when there is something unread, so a
		// notification written after the user read its event does not
		// wake /sync with an empty room.
		if notified && !r.has && n == 0 && h == 0 {
			continue
		}
		if notified {
			req.include(id, r.jr)
			news = true
		}
	}
	return to, news, nil
}
