package storage

import (
	"context"
	"fmt"
)

// AddStickyEvent records, in the running write, that the event at pos is
// an MSC4354 sticky event until expiresTS (Unix ms).
func (tx *Tx) AddStickyEvent(ctx context.Context, eventID, roomID string, pos, expiresTS int64) error {
	_, err := tx.exec(ctx, `INSERT INTO sticky_events (event_id, room_id, pos, expires_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (event_id) DO NOTHING`, eventID, roomID, pos, expiresTS)
	if err != nil {
		return fmt.Errorf("storage: add sticky event: %w", err)
	}
	return nil
}

// StickyEvents returns up to limit events of roomID with positions in
// (after, upto] that are still sticky at now (Unix ms) and not redacted,
// in stream order.
func (db *DB) StickyEvents(ctx context.Context, roomID string, after, upto, now int64, limit int) ([]Event, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+eventColumns+` FROM events WHERE event_id IN (
			SELECT event_id FROM sticky_events WHERE room_id = $1 AND pos > $2 AND pos <= $3 AND expires_ts > $4
			ORDER BY pos LIMIT $5)
		AND redacted_by IS NULL AND outlier = 0 ORDER BY pos`, roomID, after, upto, now, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: sticky events: %w", err)
	}
	return scanEvents(rows)
}

// HasExpiredSticky reports whether any sticky-event record expired by now.
func (db *DB) HasExpiredSticky(ctx context.Context, now int64) (bool, error) {
	var n int
	err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM sticky_events WHERE expires_ts <= $1 LIMIT 1) AS e`, now).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("storage: expired sticky events: %w", err)
	}
	return n > 0, nil
}

// ForgetExpiredSticky deletes the records of sticky events expired at now.
func (tx *Tx) ForgetExpiredSticky(ctx context.Context, now int64) error {
	if _, err := tx.exec(ctx, `DELETE FROM sticky_events WHERE expires_ts <= $1`, now); err != nil {
		return fmt.Errorf("storage: forget expired sticky events: %w", err)
	}
	return nil
}
