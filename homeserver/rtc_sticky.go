package homeserver

import (
	"context"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// MSC4354 ("Sticky events"): a timeline event sent with
// ?org.matrix.msc4354.sticky_duration_ms=<ms> carries a top-level
// "msc4354_sticky": {"duration_ms": N} in its PDU, and clients treat it as
// current for that long after it was sent (MatrixRTC's m.rtc.member and
// call notifications). The key sits outside "content", so it is covered by
// the content hash but dropped by redaction, like any unknown top-level
// key; event IDs and signatures are made the usual way over it.

const (
	stickyParam = "org.matrix.msc4354.sticky_duration_ms"
	stickyKey   = rooms.StickyKey
	// maxStickyMS is the MSC's cap on any sticky duration, whoever set it.
	maxStickyMS = 3_600_000
)

// stickyQuery reads ?org.matrix.msc4354.sticky_duration_ms: 0 without it,
// otherwise the duration clamped to RTCConfig.MaxStickyDuration (the MSC
// lets a server shorten it).
func (s *Server) stickyQuery(c echo.Context) (int64, error) {
	q := c.QueryParams()
	if !q.Has(stickyParam) {
		return 0, nil
	}
	ms, err := strconv.ParseInt(q.Get(stickyParam), 10, 64)
	if err != nil || ms < 0 {
		return 0, errInvalidParam("%s must be a non-negative integer of milliseconds", stickyParam)
	}
	return min(ms, s.cfg.RTC.MaxStickyDuration.Milliseconds()), nil
}

// stickyInfo is the msc4354_sticky object of a stored PDU.
type stickyInfo struct {
	DurationMS int64 `json:"duration_ms"`
}

// stickyTTL is how long a sticky event stays sticky at nowMS, measured
// from the earlier of its origin_server_ts and its arrival here (MSC4354,
// so that a sender's clock set ahead cannot stretch it); 0 when over.
func stickyTTL(info stickyInfo, originTS, receivedTS, nowMS int64) int64 {
	start := min(originTS, receivedTS)
	return max(min(info.DurationMS, maxStickyMS)-(nowMS-start), 0)
}

// maxStickyPerSync is how many sticky events one /sync room section
// carries (the MSC suggests 100).
const maxStickyPerSync = 100

// syncSticky returns a joined room's msc4354_sticky section (MSC4354, "Sync
// API changes"): the room's still-sticky events in the sync's range that
// the timeline does not carry, because it was limited or filtered them
// out. Called only then: an unlimited, unfiltered timeline holds them all.
func (s *Server) syncSticky(ctx context.Context, roomID string, v viewer, after, upto, now int64, tl []storage.Event) ([]any, error) {
	evs, err := s.db.StickyEvents(ctx, roomID, after, upto, now, maxStickyPerSync+len(tl))
	if err != nil {
		return nil, err
	}
	inTimeline := make(map[string]bool, len(tl))
	for _, e := range tl {
		inTimeline[e.EventID] = true
	}
	var out []any
	for _, e := range evs {
		if !inTimeline[e.EventID] && len(out) < maxStickyPerSync {
			out = append(out, toClient(e, v, now, false))
		}
	}
	return out, nil
}
