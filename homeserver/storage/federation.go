package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Queue item kinds.
const (
	QueuePDU = "pdu"
	QueueEDU = "edu"
)

// QueuedItem is one PDU or EDU waiting for a destination.
type QueuedItem struct {
	ID   int64
	Kind string
	JSON json.RawMessage
}

// Enqueue adds one PDU or EDU for each destination, in the running write.
func (tx *Tx) Enqueue(ctx context.Context, destinations []string, kind string, js []byte, nowMS int64) error {
	for _, d := range destinations {
		if _, err := tx.exec(ctx, `INSERT INTO federation_queue (destination, kind, json, created_ts) VALUES ($1, $2, $3, $4)`,
			d, kind, string(js), nowMS); err != nil {
			return fmt.Errorf("storage: enqueue: %w", err)
		}
	}
	return nil
}

// QueueBatch returns the oldest items for destination: at most maxPDU
// PDUs and maxEDU EDUs, each kind in queue order.
func (db *DB) QueueBatch(ctx context.Context, destination string, maxPDU, maxEDU int) ([]QueuedItem, error) {
	var out []QueuedItem
	for _, k := range []struct {
		kind  string
		limit int
	}{{QueuePDU, maxPDU}, {QueueEDU, maxEDU}} {
		rows, err := db.r.QueryContext(ctx, `SELECT id, json FROM federation_queue WHERE destination = $1 AND kind = $2 ORDER BY id LIMIT $3`,
			destination, k.kind, k.limit)
		if err != nil {
			return nil, fmt.Errorf("storage: queue batch: %w", err)
		}
		for rows.Next() {
			it := QueuedItem{Kind: k.kind}
			var js string
			if err := rows.Scan(&it.ID, &js); err != nil {
				rows.Close()
				return nil, fmt.Errorf("storage: queue batch: %w", err)
			}
			it.JSON = json.RawMessage(js)
			out = append(out, it)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// AckQueue deletes delivered items.
func (db *DB) AckQueue(ctx context.Context, ids []int64) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		for _, id := range ids {
			if _, err := tx.exec(ctx, `DELETE FROM federation_queue WHERE id = $1`, id); err != nil {
				return fmt.Errorf("storage: ack queue: %w", err)
			}
		}
		return nil
	})
}

// QueuedDestinations lists destinations with queued items.
func (db *DB) QueuedDestinations(ctx context.Context) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT DISTINCT destination FROM federation_queue`)
	if err != nil {
		return nil, fmt.Errorf("storage: queued destinations: %w", err)
	}
	return scanStrings(rows)
}

// Backoff is a destination's retry state.
type Backoff struct {
	Failures int
	RetryAt  int64
}

// DestinationBackoff returns a destination's retry state (zero if none).
func (db *DB) DestinationBackoff(ctx context.Context, destination string) (Backoff, error) {
	var b Backoff
	err := db.r.QueryRowContext(ctx, `SELECT failures, retry_at FROM federation_destinations WHERE destination = $1`, destination).Scan(&b.Failures, &b.RetryAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Backoff{}, nil
	}
	if err != nil {
		return Backoff{}, fmt.Errorf("storage: destination backoff: %w", err)
	}
	return b, nil
}

// SetDestinationBackoff records a destination's retry state.
func (db *DB) SetDestinationBackoff(ctx context.Context, destination string, b Backoff) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `INSERT INTO federation_destinations (destination, failures, retry_at) VALUES ($1, $2, $3)
			ON CONFLICT (destination) DO UPDATE SET failures = excluded.failures, retry_at = excluded.retry_at`, destination, b.Failures, b.RetryAt)
		if err != nil {
			return fmt.Errorf("storage: set destination backoff: %w", err)
		}
		return nil
	})
}

// FederationCursor returns the position up to which local events were
// queued; on first use it starts at the current position (history is
// not sent).
func (db *DB) FederationCursor(ctx context.Context) (int64, error) {
	var pos int64
	err := db.r.QueryRowContext(ctx, `SELECT pos FROM federation_cursor WHERE name = 'events'`).Scan(&pos)
	if err == nil {
		return pos, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("storage: federation cursor: %w", err)
	}
	max, err := db.MaxPos(ctx)
	if err != nil {
		return 0, err
	}
	err = db.WriteTx(ctx, func(tx *Tx) error { return tx.SetFederationCursor(ctx, max) })
	return max, err
}

// SetFederationCursor moves the cursor in the running write.
func (tx *Tx) SetFederationCursor(ctx context.Context, pos int64) error {
	_, err := tx.exec(ctx, `INSERT INTO federation_cursor (name, pos) VALUES ('events', $1)
		ON CONFLICT (name) DO UPDATE SET pos = excluded.pos`, pos)
	if err != nil {
		return fmt.Errorf("storage: federation cursor: %w", err)
	}
	return nil
}

// EventsAfter returns timeline events (not outliers) after pos, oldest
// first, at most limit.
func (db *DB) EventsAfter(ctx context.Context, pos int64, limit int) ([]Event, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+eventColumns+` FROM events WHERE pos > $1 AND outlier = 0 ORDER BY pos LIMIT $2`, pos, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: events after: %w", err)
	}
	return scanEvents(rows)
}

// JoinedMembers returns the user IDs of a room's joined members.
func (db *DB) JoinedMembers(ctx context.Context, roomID string) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT state_key FROM current_state WHERE room_id = $1 AND type = 'm.room.member' AND membership = 'join'`, roomID)
	if err != nil {
		return nil, fmt.Errorf("storage: joined members: %w", err)
	}
	return scanStrings(rows)
}

// InboundTxn returns the stored response to an inbound transaction, or
// ok false if it was not handled yet.
func (db *DB) InboundTxn(ctx context.Context, origin, txnID string) (json.RawMessage, bool, error) {
	var resp string
	err := db.r.QueryRowContext(ctx, `SELECT response FROM federation_inbound_txns WHERE origin = $1 AND txn_id = $2`, origin, txnID).Scan(&resp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("storage: inbound txn: %w", err)
	}
	return json.RawMessage(resp), true, nil
}

// RecordInboundTxn stores the response to an inbound transaction.
func (db *DB) RecordInboundTxn(ctx context.Context, origin, txnID string, resp []byte, nowMS int64) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `INSERT INTO federation_inbound_txns (origin, txn_id, response, created_ts) VALUES ($1, $2, $3, $4)
			ON CONFLICT (origin, txn_id) DO NOTHING`, origin, txnID, string(resp), nowMS)
		if err != nil {
			return fmt.Errorf("storage: record inbound txn: %w", err)
		}
		return nil
	})
}

// RemoteEvent is an event that arrived over federation: unlike a local
// event it may not extend the room's whole frontier, so the caller
// computes the state before it (from its prev events, resolved when they
// fork), the room's new current state and the new forward extremities.
type RemoteEvent struct {
	Event
	// Before is the state before the event; BeforeID its snapshot if one
	// exists already (0: store Before as a new snapshot).
	Before   StateMap
	BeforeID int64
	// Current is the room's state after the event; Extremities and Depth
	// the room's new frontier. Ignored for outliers.
	Current     StateMap
	Extremities []string
	Depth       int64
	// Memberships gives content.membership of m.room.member events that
	// Current may hold and the database may not (events stored in the
	// same write), by event ID.
	Memberships map[string]string
}

// insertSnapshot stores a state map and returns its ID.
func (tx *Tx) insertSnapshot(ctx context.Context, roomID string, m StateMap) (int64, error) {
	js, err := json.Marshal(m)
	if err != nil {
		return 0, fmt.Errorf("storage: snapshot: %w", err)
	}
	var id int64
	if err := tx.queryRow(ctx, `INSERT INTO state_snapshots (room_id, state) VALUES ($1, $2) RETURNING id`, roomID, string(js)).Scan(&id); err != nil {
		return 0, fmt.Errorf("storage: snapshot: %w", err)
	}
	return id, nil
}

func sameState(a, b StateMap) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// StoreOutlier stores an event that is not part of the timeline (state or
// auth events fetched while joining); an event already stored is kept.
func (tx *Tx) StoreOutlier(ctx context.Context, e Event) error {
	return tx.storeOutlier(ctx, e, nil)
}

// StoreOutlierWithState stores an event outside the timeline together
// with the state before it (a prev event fetched with /state_ids), so
// that events after it can compute their state; an event already stored
// is kept.
func (tx *Tx) StoreOutlierWithState(ctx context.Context, e Event, before StateMap) error {
	return tx.storeOutlier(ctx, e, before)
}

func (tx *Tx) storeOutlier(ctx context.Context, e Event, before StateMap) error {
	if _, err := getEvent(ctx, tx, e.EventID); err == nil {
		return nil
	}
	if before != nil {
		var err error
		if e.SnapBefore, err = tx.insertSnapshot(ctx, e.RoomID, before); err != nil {
			return err
		}
		e.SnapAfter = e.SnapBefore
		if e.StateKey != nil {
			after := before.clone()
			after[StateKey{e.Type, *e.StateKey}] = e.EventID
			if e.SnapAfter, err = tx.insertSnapshot(ctx, e.RoomID, after); err != nil {
				return err
			}
		}
	}
	pos, err := tx.nextPos(ctx)
	if err != nil {
		return err
	}
	var sk any
	if e.StateKey != nil {
		sk = *e.StateKey
	}
	if _, err := tx.exec(ctx, `INSERT INTO events (pos, event_id, room_id, type, state_key, sender, origin_server_ts, received_ts,
		depth, json, snap_before, snap_after, outlier)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1)`,
		pos, e.EventID, e.RoomID, e.Type, sk, e.Sender, e.OriginTS, e.ReceivedTS, e.Depth, string(e.JSON), e.SnapBefore, e.SnapAfter); err != nil {
		return fmt.Errorf("storage: insert outlier: %w", err)
	}
	e.Pos, e.Outlier = pos, true
	tx.win.events = append(tx.win.events, e)
	return nil
}

// StoreRemoteEvent appends a federated event to the room's timeline and
// moves the room's current state and frontier as the caller computed. It
// goes through the same tables and notification keys as AppendEvent, so
// /sync delivers it like a local event.
func (tx *Tx) StoreRemoteEvent(ctx context.Context, re RemoteEvent) (int64, error) {
	e := re.Event
	room, err := getRoom(ctx, tx, e.RoomID)
	if err != nil {
		return 0, err
	}
	old, err := tx.Snapshot(ctx, room.CurrentSnapshot)
	if err != nil {
		return 0, err
	}
	pos, err := tx.nextPos(ctx)
	if err != nil {
		return 0, err
	}
	e.SnapBefore = re.BeforeID
	if e.SnapBefore == 0 {
		if e.SnapBefore, err = tx.insertSnapshot(ctx, e.RoomID, re.Before); err != nil {
			return 0, err
		}
	}
	after := re.Before
	e.SnapAfter = e.SnapBefore
	if e.StateKey != nil {
		after = re.Before.clone()
		after[StateKey{e.Type, *e.StateKey}] = e.EventID
		if e.SnapAfter, err = tx.insertSnapshot(ctx, e.RoomID, after); err != nil {
			return 0, err
		}
	}
	currentID := e.SnapAfter
	if !sameState(re.Current, after) {
		if currentID, err = tx.insertSnapshot(ctx, e.RoomID, re.Current); err != nil {
			return 0, err
		}
	}
	var sk, extra any
	if e.StateKey != nil {
		sk = *e.StateKey
	}
	if len(e.UnsignedExtra) > 0 {
		extra = string(e.UnsignedExtra)
	}
	if _, err := tx.exec(ctx, `INSERT INTO events (pos, event_id, room_id, type, state_key, sender, origin_server_ts, received_ts,
		depth, json, snap_before, snap_after, unsigned_extra)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		pos, e.EventID, e.RoomID, e.Type, sk, e.Sender, e.OriginTS, e.ReceivedTS, e.Depth, string(e.JSON),
		e.SnapBefore, e.SnapAfter, extra); err != nil {
		return 0, fmt.Errorf("storage: insert event: %w", err)
	}
	e.Pos = pos
	if len(e.UnsignedExtra) == 0 {
		e.UnsignedExtra = nil // as read back from a NULL column
	}
	tx.win.events = append(tx.win.events, e)
	// Current state: write what changed, delete what resolution dropped.
	memberChanged := false
	for k, id := range re.Current {
		if old[k] == id {
			continue
		}
		membership := ""
		if k.Type == "m.room.member" {
			if m, ok := re.Memberships[id]; ok {
				membership = m
			} else if ev, err := getEvent(ctx, tx, id); err == nil {
				membership = membershipOf(ev.JSON)
			}
			tx.touch(k.StateKey, KeyMembers(e.RoomID))
			memberChanged = true
		}
		if _, err := tx.exec(ctx, `INSERT INTO current_state (room_id, type, state_key, event_id, membership, pos)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id,
				membership = excluded.membership, pos = excluded.pos`,
			e.RoomID, k.Type, k.StateKey, id, nullString(membership), pos); err != nil {
			return 0, fmt.Errorf("storage: current state: %w", err)
		}
	}
	for k := range old {
		if _, ok := re.Current[k]; ok {
			continue
		}
		if _, err := tx.exec(ctx, `DELETE FROM current_state WHERE room_id = $1 AND type = $2 AND state_key = $3`, e.RoomID, k.Type, k.StateKey); err != nil {
			return 0, fmt.Errorf("storage: current state: %w", err)
		}
		if k.Type == "m.room.member" {
			tx.touch(k.StateKey, KeyMembers(e.RoomID))
			memberChanged = true
		}
	}
	if memberChanged && e.Type != "m.room.member" {
		// Memberships changed by resolution, not by this event: an
		// outlier member entry makes the window drop cached memberships.
		tx.win.events = append(tx.win.events, Event{RoomID: e.RoomID, Type: "m.room.member", Outlier: true})
	}
	tx.touch(e.RoomID)
	if re.Extremities == nil {
		re.Extremities = []string{}
	}
	ext, _ := json.Marshal(re.Extremities)
	if _, err := tx.exec(ctx, `UPDATE rooms SET extremities = $1, depth = $2, current_snapshot = $3 WHERE room_id = $4`,
		string(ext), max(re.Depth, room.Depth), currentID, e.RoomID); err != nil {
		return 0, fmt.Errorf("storage: update room: %w", err)
	}
	return pos, nil
}

func membershipOf(js []byte) string {
	var ev struct {
		Content struct {
			Membership string `json:"membership"`
		} `json:"content"`
	}
	_ = json.Unmarshal(js, &ev)
	return ev.Content.Membership
}

// EarliestTimelineEvent returns the room's timeline event with the lowest
// stream position (where backwards pagination ends), ErrNotFound if none.
func (db *DB) EarliestTimelineEvent(ctx context.Context, roomID string) (Event, error) {
	e, err := scanEvent(db.r.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM events WHERE room_id = $1 AND outlier = 0
		ORDER BY pos ASC LIMIT 1`, roomID))
	if errors.Is(err, sql.ErrNoRows) {
		return Event{}, ErrNotFound
	}
	if err != nil {
		return Event{}, fmt.Errorf("storage: earliest event: %w", err)
	}
	return e, nil
}

// StoreBackfilled adds an event from before the room's known history to
// its timeline (or moves an outlier there). Backfilled events take
// stream positions below every other, counting down from -1, so that
// backwards pagination finds them before the events we already had and
// /sync, which reads forwards from its token, never sends them as new.
// They carry no state snapshot (the state at them is unknown here). It
// reports whether the event was added.
func (tx *Tx) StoreBackfilled(ctx context.Context, e Event) (bool, error) {
	old, err := getEvent(ctx, tx, e.EventID)
	known := err == nil
	if known && !old.Outlier {
		return false, nil
	}
	var low int64
	if err := tx.queryRow(ctx, `SELECT COALESCE(MIN(pos), 0) FROM events`).Scan(&low); err != nil {
		return false, fmt.Errorf("storage: backfill position: %w", err)
	}
	pos := min(low, 0) - 1
	if known {
		if _, err := tx.exec(ctx, `UPDATE events SET pos = $1, outlier = 0 WHERE event_id = $2`, pos, e.EventID); err != nil {
			return false, fmt.Errorf("storage: backfill outlier: %w", err)
		}
		return true, nil
	}
	var sk any
	if e.StateKey != nil {
		sk = *e.StateKey
	}
	if _, err := tx.exec(ctx, `INSERT INTO events (pos, event_id, room_id, type, state_key, sender, origin_server_ts, received_ts,
		depth, json, snap_before, snap_after, outlier)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, 0, 0)`,
		pos, e.EventID, e.RoomID, e.Type, sk, e.Sender, e.OriginTS, e.ReceivedTS, e.Depth, string(e.JSON)); err != nil {
		return false, fmt.Errorf("storage: insert backfilled event: %w", err)
	}
	return true, nil
}
