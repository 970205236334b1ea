package homeserver

import (
	"context"

	"github.com/labstack/echo/v4"
)

// notifyUser wakes userID's own /sync and those of everyone sharing a
// room with them (device list changes reach those), after a write that
// committed up to the database's newest position.
func (s *Server) notifyUser(ctx context.Context, userID string) {
	pos, err := s.db.MaxPos(ctx)
	if err != nil {
		s.log.Warn("notify: read position", "err", err)
		return
	}
	keys := []string{userID}
	if ms, err := s.db.Memberships(ctx, userID); err == nil {
		for _, m := range ms {
			if m.Membership == "join" {
				keys = append(keys, m.RoomID)
			}
		}
	}
	s.notifier.Notify(pos, keys...)
}

// advance is notifyUser for the authenticated user of a request.
func (s *Server) advance(c echo.Context) {
	s.notifyUser(c.Request().Context(), device(c).UserID)
}
