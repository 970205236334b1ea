package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// DelayedEvent is an MSC4140 delayed event: an event a user asked to be
// sent into a room later unless it is restarted or cancelled first.
type DelayedEvent struct {
	DelayID  string
	UserID   string
	DeviceID string
	RoomID   string
	Type     string
	// StateKey is nil for a message event.
	StateKey *string
	Content  json.RawMessage
	// DelayMS is the delay asked for; RunningSince is when the current
	// countdown began (the request, or the last restart), SendAt when it
	// ends. All in Unix milliseconds.
	DelayMS      int64
	RunningSince int64
	SendAt       int64
	// StickyMS is the MSC4354 sticky duration of the event once sent,
	// 0 for an event that is not sticky.
	StickyMS int64
	// TxnID is the client transaction of a delayed PUT send, "" for state.
	TxnID string
}

const delayedColumns = `delay_id, user_id, device_id, room_id, type, state_key, content, delay_ms, running_since, send_at, sticky_ms, txn_id`

func scanDelayed(row interface{ Scan(...any) error }) (DelayedEvent, error) {
	var d DelayedEvent
	var sk, txn sql.NullString
	var content string
	if err := row.Scan(&d.DelayID, &d.UserID, &d.DeviceID, &d.RoomID, &d.Type, &sk, &content,
		&d.DelayMS, &d.RunningSince, &d.SendAt, &d.StickyMS, &txn); err != nil {
		return DelayedEvent{}, err
	}
	d.TxnID = txn.String
	if sk.Valid {
		k := sk.String
		d.StateKey = &k
	}
	d.Content = json.RawMessage(content)
	return d, nil
}

func scanDelayedRows(rows *sql.Rows) ([]DelayedEvent, error) {
	defer rows.Close()
	var out []DelayedEvent
	for rows.Next() {
		d, err := scanDelayed(rows)
		if err != nil {
			return nil, fmt.Errorf("storage: delayed events: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: delayed events: %w", err)
	}
	return out, nil
}

// AddDelayedEvent stores a new delayed event in the running write.
func (tx *Tx) AddDelayedEvent(ctx context.Context, d DelayedEvent) error {
	var sk any
	if d.StateKey != nil {
		sk = *d.StateKey
	}
	_, err := tx.exec(ctx, `INSERT INTO delayed_events (`+delayedColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		d.DelayID, d.UserID, d.DeviceID, d.RoomID, d.Type, sk, string(d.Content), d.DelayMS, d.RunningSince, d.SendAt, d.StickyMS, nullString(d.TxnID))
	if err != nil {
		return fmt.Errorf("storage: add delayed event: %w", err)
	}
	return nil
}

// DelayedByTxn returns the delay ID scheduled by a device's client
// transaction, "" when there is none (any more).
func (tx *Tx) DelayedByTxn(ctx context.Context, userID, deviceID, txnID string) (string, error) {
	var id string
	err := tx.QueryRowContext(ctx, `SELECT delay_id FROM delayed_events WHERE user_id = $1 AND device_id = $2 AND txn_id = $3`,
		userID, deviceID, txnID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("storage: delayed event by transaction: %w", err)
	}
	return id, nil
}

// CountDelayedEvents returns how many delayed events userID has scheduled,
// inside a write so that a limit on it holds.
func (tx *Tx) CountDelayedEvents(ctx context.Context, userID string) (int, error) {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM delayed_events WHERE user_id = $1`, userID).Scan(&n); err != nil {
		return 0, fmt.Errorf("storage: count delayed events: %w", err)
	}
	return n, nil
}

// DelayedEvents returns userID's scheduled delayed events, oldest first.
func (db *DB) DelayedEvents(ctx context.Context, userID string) ([]DelayedEvent, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+delayedColumns+` FROM delayed_events WHERE user_id = $1 ORDER BY running_since, delay_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("storage: delayed events: %w", err)
	}
	return scanDelayedRows(rows)
}

// DelayedEvent returns one delayed event, ErrNotFound if it is not
// scheduled (never was, or was sent or cancelled).
func (db *DB) DelayedEvent(ctx context.Context, delayID string) (DelayedEvent, error) {
	d, err := scanDelayed(db.r.QueryRowContext(ctx, `SELECT `+delayedColumns+` FROM delayed_events WHERE delay_id = $1`, delayID))
	if errors.Is(err, sql.ErrNoRows) {
		return DelayedEvent{}, ErrNotFound
	}
	if err != nil {
		return DelayedEvent{}, fmt.Errorf("storage: delayed event: %w", err)
	}
	return d, nil
}

// RestartDelayedEvent starts a delayed event's countdown again at now
// (Unix ms), in the running write. ErrNotFound if it is not scheduled.
func (tx *Tx) RestartDelayedEvent(ctx context.Context, delayID string, now int64) error {
	res, err := tx.exec(ctx, `UPDATE delayed_events SET running_since = $2, send_at = $2 + delay_ms WHERE delay_id = $1`, delayID, now)
	if err != nil {
		return fmt.Errorf("storage: restart delayed event: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// TakeDelayedEvent removes a delayed event in the running write and
// returns it, ErrNotFound if it is not scheduled. Whoever takes it owns
// sending (or dropping) it: two takers cannot both succeed.
func (tx *Tx) TakeDelayedEvent(ctx context.Context, delayID string) (DelayedEvent, error) {
	d, err := scanDelayed(tx.QueryRowContext(ctx, `SELECT `+delayedColumns+` FROM delayed_events WHERE delay_id = $1`, delayID))
	if errors.Is(err, sql.ErrNoRows) {
		return DelayedEvent{}, ErrNotFound
	}
	if err != nil {
		return DelayedEvent{}, fmt.Errorf("storage: take delayed event: %w", err)
	}
	res, err := tx.exec(ctx, `DELETE FROM delayed_events WHERE delay_id = $1`, delayID)
	if err != nil {
		return DelayedEvent{}, fmt.Errorf("storage: take delayed event: %w", err)
	}
	// Another node's transaction may have taken it between the read and
	// the delete (PostgreSQL, read committed): only one delete counts.
	if n, _ := res.RowsAffected(); n != 1 {
		return DelayedEvent{}, ErrNotFound
	}
	return d, nil
}

// DueDelayedEvents returns up to limit delayed events due at now (Unix
// ms), earliest first.
func (db *DB) DueDelayedEvents(ctx context.Context, now int64, limit int) ([]DelayedEvent, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+delayedColumns+` FROM delayed_events WHERE send_at <= $1 ORDER BY send_at, delay_id LIMIT $2`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: due delayed events: %w", err)
	}
	return scanDelayedRows(rows)
}

// NextDelayedSendAt returns when the earliest delayed event is due; ok is
// false when none is scheduled.
func (db *DB) NextDelayedSendAt(ctx context.Context) (sendAt int64, ok bool, err error) {
	var v sql.NullInt64
	if err := db.r.QueryRowContext(ctx, `SELECT MIN(send_at) FROM delayed_events`).Scan(&v); err != nil {
		return 0, false, fmt.Errorf("storage: next delayed event: %w", err)
	}
	return v.Int64, v.Valid, nil
}

// CancelDelayedStateEvents drops, in the running write, the delayed state
// events for (roomID, evType, stateKey) of users other than sender: a
// newer state event supersedes them (MSC4140, "Delayed state events").
// It returns how many were dropped.
func (tx *Tx) CancelDelayedStateEvents(ctx context.Context, roomID, evType, stateKey, sender string) (int64, error) {
	res, err := tx.exec(ctx, `DELETE FROM delayed_events WHERE room_id = $1 AND type = $2 AND state_key = $3 AND user_id <> $4`,
		roomID, evType, stateKey, sender)
	if err != nil {
		return 0, fmt.Errorf("storage: cancel delayed state events: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
