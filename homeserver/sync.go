package homeserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	hsync "github.com/switchboard-chat/switchboard/homeserver/sync"
)

// sync implements GET /sync (spec: Client-Server API, "Syncing"): an
// initial sync without since, an incremental one with it, waiting up to
// timeout ms for something new. The streams and the long-poll are the
// sync package's; this is the HTTP edge.
func (s *Server) sync(c echo.Context) error {
	ctx := c.Request().Context()
	d := device(c)
	req := hsync.Request{UserID: d.UserID, DeviceID: d.DeviceID, FullState: c.QueryParam("full_state") == "true"}
	if tok := c.QueryParam("since"); tok != "" {
		t, err := hsync.ParseToken(tok)
		if err != nil {
			return errInvalidParam("invalid since token")
		}
		req.Since = &t
	}
	timeout, err := parseTimeout(c)
	if err != nil {
		return err
	}
	if err := s.loadSyncFilter(ctx, d.UserID, c.QueryParam("filter"), &req.Filter); err != nil {
		return err
	}
	if err := s.syncSetPresence(ctx, d.UserID, c.QueryParam("set_presence")); err != nil {
		return err
	}
	s.metrics.syncRequests.Inc()
	resp, err := s.syncer.Sync(ctx, &req, timeout)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}

// parseTimeout reads a long-poll's ?timeout= (milliseconds), capped at
// hsync.MaxTimeout.
func parseTimeout(c echo.Context) (time.Duration, error) {
	t := c.QueryParam("timeout")
	if t == "" {
		return 0, nil
	}
	ms, err := strconv.ParseInt(t, 10, 64)
	if err != nil || ms < 0 {
		return 0, errInvalidParam("timeout must be a non-negative integer")
	}
	return time.Duration(min(ms, int64(hsync.MaxTimeout/time.Millisecond))) * time.Millisecond, nil
}

// loadSyncFilter reads ?filter=: inline JSON or the ID of a stored filter.
func (s *Server) loadSyncFilter(ctx context.Context, userID, raw string, f *hsync.Filter) error {
	if raw == "" {
		return nil
	}
	body := []byte(raw)
	if !strings.HasPrefix(strings.TrimSpace(raw), "{") {
		stored, err := s.db.Filter(ctx, userID, raw)
		if errors.Is(err, storage.ErrNotFound) {
			return errNotFound("No filter %s", raw)
		}
		if err != nil {
			return err
		}
		body = stored
	}
	if err := json.Unmarshal(body, f); err != nil {
		return errBadJSON("filter: %v", err)
	}
	return nil
}
