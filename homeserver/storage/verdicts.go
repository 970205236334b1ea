package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Event verdicts.
const (
	VerdictRejected   = "rejected"
	VerdictSoftFailed = "soft_failed"
)

// Verdict is why a federated event was refused or soft-failed.
type Verdict struct {
	EventID, RoomID, Verdict, Reason string
	ReceivedTS                       int64
}

// RecordVerdict stores a verdict in the running write; a verdict already
// recorded for the event is kept.
func (tx *Tx) RecordVerdict(ctx context.Context, v Verdict) error {
	_, err := tx.exec(ctx, `INSERT INTO event_verdicts (event_id, room_id, verdict, reason, received_ts) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (event_id) DO NOTHING`, v.EventID, v.RoomID, v.Verdict, v.Reason, v.ReceivedTS)
	if err != nil {
		return fmt.Errorf("storage: record verdict: %w", err)
	}
	return nil
}

// EventVerdict returns the verdict on eventID, ErrNotFound if there is none.
func (db *DB) EventVerdict(ctx context.Context, eventID string) (Verdict, error) {
	return eventVerdict(ctx, db.r, eventID)
}

// EventVerdict reads a verdict inside a write.
func (tx *Tx) EventVerdict(ctx context.Context, eventID string) (Verdict, error) {
	return eventVerdict(ctx, tx, eventID)
}

func eventVerdict(ctx context.Context, q querier, eventID string) (Verdict, error) {
	v := Verdict{EventID: eventID}
	err := q.QueryRowContext(ctx, `SELECT room_id, verdict, reason, received_ts FROM event_verdicts WHERE event_id = $1`, eventID).
		Scan(&v.RoomID, &v.Verdict, &v.Reason, &v.ReceivedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return Verdict{}, ErrNotFound
	}
	if err != nil {
		return Verdict{}, fmt.Errorf("storage: event verdict: %w", err)
	}
	return v, nil
}

// AddPendingRedaction records, in the running write, a redaction whose
// target is not known yet.
func (tx *Tx) AddPendingRedaction(ctx context.Context, targetID, redactionID string) error {
	_, err := tx.exec(ctx, `INSERT INTO pending_redactions (target_id, redaction_id) VALUES ($1, $2)
		ON CONFLICT (target_id, redaction_id) DO NOTHING`, targetID, redactionID)
	if err != nil {
		return fmt.Errorf("storage: pending redaction: %w", err)
	}
	return nil
}

// TakePendingRedactions returns and forgets, in the running write, the
// IDs of the redactions waiting for targetID.
func (tx *Tx) TakePendingRedactions(ctx context.Context, targetID string) ([]string, error) {
	rows, err := tx.query(ctx, `SELECT redaction_id FROM pending_redactions WHERE target_id = $1`, targetID)
	if err != nil {
		return nil, fmt.Errorf("storage: pending redactions: %w", err)
	}
	ids, err := scanStrings(rows)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	if _, err := tx.exec(ctx, `DELETE FROM pending_redactions WHERE target_id = $1`, targetID); err != nil {
		return nil, fmt.Errorf("storage: pending redactions: %w", err)
	}
	return ids, nil
}
