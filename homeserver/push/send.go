package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// sendLoop sends a pusher's notifications until the pusher is gone or
// the manager closes.
func (m *Manager) sendLoop(ps *sender) {
	defer m.wg.Done()
	backoff := time.Duration(0)
	for {
		if backoff > 0 {
			t := m.cfg.Clock.NewTimer(backoff)
			select {
			case <-m.stop:
				t.Stop()
				return
			case <-t.C():
			}
		} else {
			select {
			case <-m.stop:
				return
			default:
			}
		}
		idle, gone, err := m.sendOnce(ps.key)
		switch {
		case gone:
			if m.retire(ps) {
				return
			}
			continue
		case err != nil:
			if m.ctx.Err() != nil {
				return
			}
			backoff = nextBackoff(backoff, m.cfg.RetryMin, m.cfg.RetryMax)
			m.log.Info("push gateway failed, retrying", "user_id", ps.key.user, "app_id", ps.key.appID, "retry_in", backoff, "err", err)
			continue
		}
		backoff = 0
		if !idle {
			continue
		}
		select {
		case <-m.stop:
			return
		case <-ps.wake:
		}
	}
}

// nextBackoff doubles the delay between min and max.
func nextBackoff(cur, min, max time.Duration) time.Duration {
	if cur == 0 {
		return min
	}
	if cur *= 2; cur > max {
		return max
	}
	return cur
}

// retire removes a sender whose pusher is gone, unless it was woken
// meanwhile (the pusher may have been set again): it reports whether the
// sender should stop.
func (m *Manager) retire(ps *sender) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-ps.wake:
		return false
	default:
	}
	delete(m.senders, ps.key)
	return true
}

// sendOnce sends the next batch of a pusher's notifications. idle reports
// that nothing was left; gone that the pusher no longer exists (or was
// rejected).
func (m *Manager) sendOnce(k pusherKey) (idle, gone bool, err error) {
	ctx := m.ctx
	db := m.db
	p, err := db.Pusher(ctx, k.user, k.appID, k.pushkey)
	if errors.Is(err, storage.ErrNotFound) {
		return false, true, nil
	}
	if err != nil {
		return false, false, err
	}
	ns, err := db.NotificationsAfter(ctx, k.user, p.LastPos, sendBatch)
	if err != nil || len(ns) == 0 {
		return err == nil, false, err
	}
	for _, n := range ns {
		rejected, err := m.notify(ctx, p, n)
		if err != nil {
			return false, false, err
		}
		if rejected {
			// Spec (Push Gateway API, "rejected"): the homeserver should
			// stop sending to a pushkey the gateway rejects.
			m.log.Info("push gateway rejected pushkey; removing pusher", "user_id", k.user, "app_id", k.appID)
			return false, true, db.DeletePusher(ctx, k.user, k.appID, k.pushkey)
		}
		if err := db.AdvancePusher(ctx, k.user, k.appID, k.pushkey, n.Pos); err != nil {
			return false, false, err
		}
	}
	return false, false, nil
}

// PusherData is the part of a pusher's data the server reads.
type PusherData struct {
	URL    string `json:"url"`
	Format string `json:"format"`
}

// notify POSTs one notification to the pusher's gateway (Push Gateway
// API, "POST /_matrix/push/v1/notify"). A 4xx other than 429 drops the
// notification (the gateway will not take it later either).
func (m *Manager) notify(ctx context.Context, p storage.Pusher, n storage.Notification) (rejected bool, err error) {
	var pd PusherData
	_ = json.Unmarshal(p.Data, &pd)
	body, err := m.notifyBody(ctx, p, pd, n)
	if err != nil {
		return false, err
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, pd.URL, bytes.NewReader(body))
	if err != nil {
		m.log.Info("pusher URL unusable; dropping notification", "user_id", p.UserID, "err", err)
		return false, nil
	}
	req.Header.Set("Content-Type", "application/json")
	start := m.cfg.Clock.Now()
	resp, err := m.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("%w: %v", errRetry, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return false, fmt.Errorf("%w: status %d", errRetry, resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK {
		m.log.Info("push gateway refused notification; dropping it", "user_id", p.UserID, "status", resp.StatusCode)
		return false, nil
	}
	m.log.Debug("push sent", "user_id", p.UserID, "event_id", n.EventID, "took", m.cfg.Clock.Now().Sub(start))
	var out struct {
		Rejected []string `json:"rejected"`
	}
	_ = json.Unmarshal(raw, &out)
	for _, r := range out.Rejected {
		if r == p.Pushkey {
			return true, nil
		}
	}
	return false, nil
}

// notifyBody builds the gateway request. With data.format
// "event_id_only" only IDs, counts and the device are sent (spec: Push
// Gateway API; "POST /pushers/set", data.format).
func (m *Manager) notifyBody(ctx context.Context, p storage.Pusher, pd PusherData, n storage.Notification) ([]byte, error) {
	unread, _, err := m.db.UnreadCounts(ctx, p.UserID, "")
	if err != nil {
		return nil, err
	}
	o := outcomeOf(n.Actions)
	var data map[string]any
	_ = json.Unmarshal(p.Data, &data)
	delete(data, "url")
	dev := map[string]any{
		"app_id": p.AppID, "pushkey": p.Pushkey, "pushkey_ts": p.CreatedTS / 1000,
		"data": data, "tweaks": o.tweaks,
	}
	notif := map[string]any{
		"event_id": n.EventID, "room_id": n.RoomID,
		"counts":  map[string]any{"unread": unread},
		"devices": []any{dev},
	}
	ev, err := m.db.Event(ctx, n.EventID)
	if err != nil {
		return nil, err
	}
	var pdu struct {
		Type     string          `json:"type"`
		Sender   string          `json:"sender"`
		StateKey *string         `json:"state_key"`
		Content  json.RawMessage `json:"content"`
	}
	_ = json.Unmarshal(ev.JSON, &pdu)
	// prio high wakes a sleeping phone at once: calls, highlights and
	// anything with a sound (or encrypted, which may be either).
	prio := "low"
	if pdu.Type == "m.call.invite" || pdu.Type == "m.room.encrypted" || o.highlight || o.sound != "" {
		prio = "high"
	}
	notif["prio"] = prio
	if pd.Format != "event_id_only" {
		notif["type"] = pdu.Type
		notif["sender"] = pdu.Sender
		notif["content"] = pdu.Content
		if pdu.StateKey != nil && *pdu.StateKey == p.UserID {
			notif["user_is_target"] = true
		}
		if name, err := m.roomDisplayName(ctx, n.RoomID, pdu.Sender); err == nil && name != "" {
			notif["sender_display_name"] = name
		}
		if name := m.roomName(ctx, n.RoomID); name != "" {
			notif["room_name"] = name
		}
	}
	return json.Marshal(map[string]any{"notification": notif})
}

// roomName is the room's m.room.name, "" if none.
func (m *Manager) roomName(ctx context.Context, roomID string) string {
	ev, err := m.db.CurrentStateEvent(ctx, roomID, spec.MRoomName, "")
	if err != nil {
		return ""
	}
	var c struct {
		Content struct {
			Name string `json:"name"`
		} `json:"content"`
	}
	_ = json.Unmarshal(ev.JSON, &c)
	return c.Content.Name
}
