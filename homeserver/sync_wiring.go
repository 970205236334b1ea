package homeserver

import (
	"context"
	"encoding/json"

	"github.com/switchboard-chat/switchboard/homeserver/push"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
	hsync "github.com/switchboard-chat/switchboard/homeserver/sync"
)

// syncDeps gives the sync package what it needs of the homeserver, as the
// small interfaces it defines: history visibility (visibility.go), the
// client event format (format.go), timeline gaps (gaps.go), sticky events
// (rtc_sticky.go), push rules (push_*.go) and the presence scan
// (presence.go).
type syncDeps struct{ s *Server }

// newSyncer wires the sync package's Syncer.
func (s *Server) newSyncer() (*hsync.Syncer, error) {
	d := syncDeps{s}
	return hsync.New(hsync.Config{
		Store: s.db, Notifier: s.notifier, Ephemeral: s.eph, Clock: s.cfg.Clock, Shutdown: s.shutdown,
		Visibility: d, Formatter: d, Gaps: d, Sticky: d, PushRules: d, Presence: d,
	})
}

// Visible implements hsync.Visibility.
func (d syncDeps) Visible(ctx context.Context, roomID, userID string, joinedSince int64, evs []storage.Event) ([]storage.Event, error) {
	vis := d.s.userVisibility(roomID, userID)
	vis.joinedSince = joinedSince
	return vis.filter(ctx, evs)
}

// ClientEvents implements hsync.Formatter.
func (syncDeps) ClientEvents(evs []storage.Event, userID, deviceID string, nowMS int64) []any {
	out := make([]any, 0, len(evs))
	for _, e := range evs {
		out = append(out, toClient(e, viewer{userID, deviceID}, nowMS, false))
	}
	return out
}

// CutAtGap implements hsync.Gaps.
func (d syncDeps) CutAtGap(ctx context.Context, roomID string, evs []storage.Event, after int64) ([]storage.Event, bool, error) {
	cut, _, ok, err := d.s.cutAtGap(ctx, roomID, evs, after)
	return cut, ok, err
}

// StickyEvents implements hsync.Sticky.
func (d syncDeps) StickyEvents(ctx context.Context, roomID, userID, deviceID string, after, upto, nowMS int64, tl []storage.Event) ([]any, error) {
	return d.s.syncSticky(ctx, roomID, viewer{userID, deviceID}, after, upto, nowMS, tl)
}

// PushRulesContent implements hsync.PushRules.
func (d syncDeps) PushRulesContent(ctx context.Context, userID string) (json.RawMessage, error) {
	rules, err := push.Content(ctx, d.s.db, userID)
	return json.RawMessage(rules), err
}
