package storage

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Batched room lookups for sliding sync (MSC4186), one query per chunk of
// rooms instead of one per room.

// inChunk is how many rooms one IN list holds.
const inChunk = 400

// placeholders returns "$from, $from+1, ..." for n values.
func placeholders(from, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(from+i))
	}
	return b.String()
}

// chunked runs fn over roomIDs in chunks of inChunk.
func chunked(roomIDs []string, fn func(part []string) error) error {
	for len(roomIDs) > 0 {
		n := min(len(roomIDs), inChunk)
		if err := fn(roomIDs[:n]); err != nil {
			return err
		}
		roomIDs = roomIDs[n:]
	}
	return nil
}

// RoomsState returns the current state events with an empty state key
// and one of types, of the given rooms.
func (db *DB) RoomsState(ctx context.Context, roomIDs, types []string) ([]Event, error) {
	var out []Event
	err := chunked(roomIDs, func(part []string) error {
		args := make([]any, 0, len(part)+len(types))
		for _, t := range types {
			args = append(args, t)
		}
		for _, r := range part {
			args = append(args, r)
		}
		rows, err := db.r.QueryContext(ctx, `SELECT `+prefixed("e")+` FROM current_state c JOIN events e ON e.event_id = c.event_id
			WHERE c.state_key = '' AND c.type IN (`+placeholders(1, len(types))+`) AND c.room_id IN (`+placeholders(1+len(types), len(part))+`)`, args...)
		if err != nil {
			return fmt.Errorf("storage: rooms state: %w", err)
		}
		evs, err := scanEvents(rows)
		if err != nil {
			return err
		}
		out = append(out, evs...)
		return nil
	})
	return out, err
}

// BumpStamps returns, per room, the position of the newest timeline event
// of one of types (rooms without one are absent).
func (db *DB) BumpStamps(ctx context.Context, roomIDs, types []string) (map[string]int64, error) {
	out := make(map[string]int64, len(roomIDs))
	err := chunked(roomIDs, func(part []string) error {
		args := make([]any, 0, len(part)+len(types))
		for _, t := range types {
			args = append(args, t)
		}
		for _, r := range part {
			args = append(args, r)
		}
		rows, err := db.r.QueryContext(ctx, `SELECT room_id, MAX(pos) FROM events
			WHERE outlier = 0 AND type IN (`+placeholders(1, len(types))+`) AND room_id IN (`+placeholders(1+len(types), len(part))+`)
			GROUP BY room_id`, args...)
		if err != nil {
			return fmt.Errorf("storage: bump stamps: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var room string
			var pos int64
			if err := rows.Scan(&room, &pos); err != nil {
				return fmt.Errorf("storage: bump stamps: %w", err)
			}
			out[room] = pos
		}
		return rows.Err()
	})
	return out, err
}
