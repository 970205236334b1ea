package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Gap is a hole in a room's timeline just before the timeline event
// EventID (at Pos): its prev events PrevIDs were not held when it was
// stored. Filled is set once pagination fetched what lies in it.
type Gap struct {
	EventID string
	RoomID  string
	Pos     int64
	PrevIDs []string
	Filled  bool
}

// RecordGap notes a gap before the timeline event eventID (at pos); a gap
// already noted is kept.
func (tx *Tx) RecordGap(ctx context.Context, g Gap) error {
	prev, err := json.Marshal(g.PrevIDs)
	if err != nil {
		return fmt.Errorf("storage: record gap: %w", err)
	}
	if _, err := tx.exec(ctx, `INSERT INTO timeline_gaps (event_id, room_id, pos, prev_ids) VALUES ($1, $2, $3, $4)
		ON CONFLICT (event_id) DO NOTHING`, g.EventID, g.RoomID, g.Pos, string(prev)); err != nil {
		return fmt.Errorf("storage: record gap: %w", err)
	}
	return nil
}

const gapColumns = `event_id, room_id, pos, prev_ids, filled`

func scanGap(s scanner) (Gap, error) {
	var g Gap
	var prev string
	var filled int
	if err := s.Scan(&g.EventID, &g.RoomID, &g.Pos, &prev, &filled); err != nil {
		return g, err
	}
	g.Filled = filled != 0
	if err := json.Unmarshal([]byte(prev), &g.PrevIDs); err != nil {
		return g, fmt.Errorf("storage: gap %s: %w", g.EventID, err)
	}
	return g, nil
}

// LatestGap returns the room's gap with the highest position in
// [lo, hi], or ErrNotFound.
func (db *DB) LatestGap(ctx context.Context, roomID string, lo, hi int64) (Gap, error) {
	g, err := scanGap(db.r.QueryRowContext(ctx, `SELECT `+gapColumns+` FROM timeline_gaps
		WHERE room_id = $1 AND pos >= $2 AND pos <= $3 ORDER BY pos DESC LIMIT 1`, roomID, lo, hi))
	if errors.Is(err, sql.ErrNoRows) {
		return g, ErrNotFound
	}
	if err != nil {
		return g, fmt.Errorf("storage: gap: %w", err)
	}
	return g, nil
}

// GapEvents returns the events fetched into a gap, oldest first.
func (db *DB) GapEvents(ctx context.Context, gapID string) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT event_id FROM gap_events WHERE gap_id = $1 ORDER BY seq`, gapID)
	if err != nil {
		return nil, fmt.Errorf("storage: gap events: %w", err)
	}
	return scanStrings(rows)
}

// FillGap records the events found in a gap, oldest first, and marks it
// filled.
func (tx *Tx) FillGap(ctx context.Context, gapID string, eventIDs []string) error {
	if _, err := tx.exec(ctx, `DELETE FROM gap_events WHERE gap_id = $1`, gapID); err != nil {
		return fmt.Errorf("storage: fill gap: %w", err)
	}
	for i, id := range eventIDs {
		if _, err := tx.exec(ctx, `INSERT INTO gap_events (gap_id, seq, event_id) VALUES ($1, $2, $3)`, gapID, i, id); err != nil {
			return fmt.Errorf("storage: fill gap: %w", err)
		}
	}
	if _, err := tx.exec(ctx, `UPDATE timeline_gaps SET filled = 1 WHERE event_id = $1`, gapID); err != nil {
		return fmt.Errorf("storage: fill gap: %w", err)
	}
	return nil
}

// GapPosOf returns the position of the gap that holds eventID (an event
// fetched into a gap, stored as an outlier), or ErrNotFound.
func (db *DB) GapPosOf(ctx context.Context, eventID string) (int64, error) {
	var pos int64
	err := db.r.QueryRowContext(ctx, `SELECT g.pos FROM gap_events ge JOIN timeline_gaps g ON g.event_id = ge.gap_id
		WHERE ge.event_id = $1 ORDER BY g.pos LIMIT 1`, eventID).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("storage: gap of event: %w", err)
	}
	return pos, nil
}
