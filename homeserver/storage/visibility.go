package storage

import (
	"context"
	"fmt"
)

// RoomMemberEvents returns the room's membership timeline events, oldest
// first, of the user stateKey (every user when it is ""): the membership
// history that history visibility needs ("did the user join at any point
// after the event").
func (db *DB) RoomMemberEvents(ctx context.Context, roomID, stateKey string) ([]Event, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+eventColumns+` FROM events
		WHERE room_id = $1 AND type = 'm.room.member' AND outlier = 0 AND state_key IS NOT NULL
		AND ($2 = '' OR state_key = $2) ORDER BY pos`, roomID, stateKey)
	if err != nil {
		return nil, fmt.Errorf("storage: room member events: %w", err)
	}
	return scanEvents(rows)
}
