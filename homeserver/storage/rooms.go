package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// CurrentState returns every event of the room's current state.
func (db *DB) CurrentState(ctx context.Context, roomID string) ([]Event, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+prefixed("e")+` FROM current_state c JOIN events e ON e.event_id = c.event_id
		WHERE c.room_id = $1`, roomID)
	if err != nil {
		return nil, fmt.Errorf("storage: current state: %w", err)
	}
	return scanEvents(rows)
}

// CurrentStateEvent returns one piece of current state, or ErrNotFound.
func (db *DB) CurrentStateEvent(ctx context.Context, roomID, evType, stateKey string) (Event, error) {
	e, err := scanEvent(db.r.QueryRowContext(ctx, `SELECT `+prefixed("e")+` FROM current_state c JOIN events e ON e.event_id = c.event_id
		WHERE c.room_id = $1 AND c.type = $2 AND c.state_key = $3`, roomID, evType, stateKey))
	if errors.Is(err, sql.ErrNoRows) {
		return Event{}, ErrNotFound
	}
	if err != nil {
		return Event{}, fmt.Errorf("storage: state event: %w", err)
	}
	return e, nil
}

// Membership returns userID's current membership of the room ("" if none).
func (db *DB) Membership(ctx context.Context, roomID, userID string) (string, error) {
	var m sql.NullString
	err := db.r.QueryRowContext(ctx, `SELECT membership FROM current_state WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2`,
		roomID, userID).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("storage: membership: %w", err)
	}
	return m.String, nil
}

// RoomMembership is one room's membership of a user.
type RoomMembership struct {
	RoomID     string
	Membership string
	EventID    string
	Pos        int64
}

// Memberships returns every room in which userID has a membership event.
func (db *DB) Memberships(ctx context.Context, userID string) ([]RoomMembership, error) {
	if db.window == nil {
		return db.membershipsDB(ctx, userID)
	}
	if ms, ok := db.window.members.get(userID); ok {
		return ms, nil
	}
	gen := db.window.members.gen.Load()
	ms, err := db.membershipsDB(ctx, userID)
	if err == nil {
		db.window.members.put(userID, gen, ms)
	}
	return ms, err
}

func (db *DB) membershipsDB(ctx context.Context, userID string) ([]RoomMembership, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT room_id, membership, event_id, pos FROM current_state
		WHERE type = 'm.room.member' AND state_key = $1`, userID)
	if err != nil {
		return nil, fmt.Errorf("storage: memberships: %w", err)
	}
	defer rows.Close()
	var out []RoomMembership
	for rows.Next() {
		var m RoomMembership
		var ms sql.NullString
		if err := rows.Scan(&m.RoomID, &ms, &m.EventID, &m.Pos); err != nil {
			return nil, fmt.Errorf("storage: memberships: %w", err)
		}
		m.Membership = ms.String
		out = append(out, m)
	}
	return out, rows.Err()
}

// Members returns the user IDs with the given membership of a room.
func (db *DB) Members(ctx context.Context, roomID, membership string) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT state_key FROM current_state WHERE room_id = $1 AND type = 'm.room.member' AND membership = $2`,
		roomID, membership)
	if err != nil {
		return nil, fmt.Errorf("storage: members: %w", err)
	}
	return scanStrings(rows)
}

// UsersSharingRooms returns the users joined to any room userID is joined to
// (including userID).
func (db *DB) UsersSharingRooms(ctx context.Context, userID string) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT DISTINCT o.state_key FROM current_state me
		JOIN current_state o ON o.room_id = me.room_id AND o.type = 'm.room.member' AND o.membership = 'join'
		WHERE me.type = 'm.room.member' AND me.state_key = $1 AND me.membership = 'join'`, userID)
	if err != nil {
		return nil, fmt.Errorf("storage: shared users: %w", err)
	}
	return scanStrings(rows)
}

// Timeline returns up to limit of the room's latest timeline events with
// after < pos <= upto, oldest first, and whether older ones were left out.
func (db *DB) Timeline(ctx context.Context, roomID string, after, upto int64, limit int) ([]Event, bool, error) {
	if db.window != nil {
		if evs, limited, ok := db.window.timeline(roomID, after, upto, limit); ok {
			return evs, limited, nil
		}
	}
	return db.timelineDB(ctx, roomID, after, upto, limit)
}

// timelineDB is Timeline read from the database.
func (db *DB) timelineDB(ctx context.Context, roomID string, after, upto int64, limit int) ([]Event, bool, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+eventColumns+` FROM events
		WHERE room_id = $1 AND pos > $2 AND pos <= $3 AND outlier = 0 ORDER BY pos DESC LIMIT $4`, roomID, after, upto, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("storage: timeline: %w", err)
	}
	evs, err := scanEvents(rows)
	if err != nil {
		return nil, false, err
	}
	limited := len(evs) > limit
	if limited {
		evs = evs[:limit]
	}
	reverse(evs)
	return evs, limited, nil
}

// Messages pages through a room's timeline from a position: backwards
// (dir "b") returns events with pos < from, newest first; forwards (dir "f")
// events with pos >= from, oldest first. to bounds the range: backwards
// it is exclusive (math.MinInt64: none; backfilled events have negative
// positions), forwards exclusive too (0: none).
func (db *DB) Messages(ctx context.Context, roomID string, from int64, backwards bool, to int64, limit int) ([]Event, error) {
	var rows *sql.Rows
	var err error
	if backwards {
		rows, err = db.r.QueryContext(ctx, `SELECT `+eventColumns+` FROM events
			WHERE room_id = $1 AND pos < $2 AND pos > $3 AND outlier = 0 ORDER BY pos DESC LIMIT $4`, roomID, from, to, limit)
	} else {
		if to == 0 {
			to = 1 << 62
		}
		rows, err = db.r.QueryContext(ctx, `SELECT `+eventColumns+` FROM events
			WHERE room_id = $1 AND pos >= $2 AND pos < $3 AND outlier = 0 ORDER BY pos ASC LIMIT $4`, roomID, from, to, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: messages: %w", err)
	}
	return scanEvents(rows)
}

// SnapshotAt returns the room's state snapshot as of stream position pos
// (the state after its last timeline event at or before pos; 0 if none).
func (db *DB) SnapshotAt(ctx context.Context, roomID string, pos int64) (int64, error) {
	var snap int64
	err := db.r.QueryRowContext(ctx, `SELECT snap_after FROM events WHERE room_id = $1 AND pos <= $2 AND outlier = 0
		ORDER BY pos DESC LIMIT 1`, roomID, pos).Scan(&snap)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("storage: snapshot at: %w", err)
	}
	return snap, nil
}

// MemberEvents returns userID's membership events with after < pos <= upto,
// oldest first.
func (db *DB) MemberEvents(ctx context.Context, userID string, after, upto int64) ([]Event, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+eventColumns+` FROM events
		WHERE type = 'm.room.member' AND state_key = $1 AND pos > $2 AND pos <= $3 AND outlier = 0 ORDER BY pos`, userID, after, upto)
	if err != nil {
		return nil, fmt.Errorf("storage: member events: %w", err)
	}
	return scanEvents(rows)
}

// RoomHasEventsBetween reports whether a room has any timeline event in (after, upto].
func (db *DB) RoomHasEventsBetween(ctx context.Context, roomID string, after, upto int64) (bool, error) {
	var n int
	err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE room_id = $1 AND pos > $2 AND pos <= $3 AND outlier = 0 LIMIT 1) t`,
		roomID, after, upto).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("storage: room events: %w", err)
	}
	return n > 0, nil
}

// SetAlias maps an alias to a room; ErrExists if it is taken.
func (db *DB) SetAlias(ctx context.Context, alias, roomID, creator string) error {
	return db.SetAliasWithKey(ctx, alias, "", roomID, creator)
}

// SetAliasWithKey maps an alias to a room and records its fold key (the
// caller's normal form for "reads the same"); ErrExists if the alias or
// another alias with the same non-empty key is taken.
func (db *DB) SetAliasWithKey(ctx context.Context, alias, foldKey, roomID, creator string) error {
	var key any
	if foldKey != "" {
		key = foldKey
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, `INSERT INTO room_aliases (alias, room_id, creator, fold_key) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
			alias, roomID, creator, key)
		if err != nil {
			return fmt.Errorf("storage: set alias: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrExists
		}
		return nil
	})
}

// Alias resolves an alias to (room ID, creator), or ErrNotFound.
func (db *DB) Alias(ctx context.Context, alias string) (roomID, creator string, err error) {
	err = db.r.QueryRowContext(ctx, `SELECT room_id, creator FROM room_aliases WHERE alias = $1`, alias).Scan(&roomID, &creator)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", ErrNotFound
	}
	if err != nil {
		return "", "", fmt.Errorf("storage: alias: %w", err)
	}
	return roomID, creator, nil
}

// AliasFoldKeyTaken reports whether an alias with this fold key exists.
func (db *DB) AliasFoldKeyTaken(ctx context.Context, foldKey string) (bool, error) {
	var n int
	if err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM room_aliases WHERE fold_key = $1`, foldKey).Scan(&n); err != nil {
		return false, fmt.Errorf("storage: alias fold key: %w", err)
	}
	return n > 0, nil
}

// DeleteAlias removes an alias.
func (db *DB) DeleteAlias(ctx context.Context, alias string) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `DELETE FROM room_aliases WHERE alias = $1`, alias)
		return err
	})
}

// PublicRooms lists rooms published to the directory.
func (db *DB) PublicRooms(ctx context.Context, limit, offset int) ([]string, int, error) {
	var total int
	if err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM rooms WHERE is_public = 1`).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("storage: public rooms: %w", err)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT room_id FROM rooms WHERE is_public = 1 ORDER BY created_ts, room_id LIMIT $1 OFFSET $2`, limit, offset)
	if err != nil {
		return nil, 0, fmt.Errorf("storage: public rooms: %w", err)
	}
	ids, err := scanStrings(rows)
	return ids, total, err
}

// Forget marks a room forgotten for a user.
func (db *DB) Forget(ctx context.Context, userID, roomID string) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `INSERT INTO forgotten_rooms (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, userID, roomID)
		return err
	})
}

// Forgotten reports whether a user forgot a room.
func (db *DB) Forgotten(ctx context.Context, userID, roomID string) (bool, error) {
	var n int
	err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM forgotten_rooms WHERE user_id = $1 AND room_id = $2`, userID, roomID).Scan(&n)
	return n > 0, err
}

// Unforget clears a forgotten mark (on a new join).
func (tx *Tx) Unforget(ctx context.Context, userID, roomID string) error {
	_, err := tx.exec(ctx, `DELETE FROM forgotten_rooms WHERE user_id = $1 AND room_id = $2`, userID, roomID)
	return err
}

func reverse[T any](s []T) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

func prefixed(alias string) string {
	return alias + `.pos, ` + alias + `.event_id, ` + alias + `.room_id, ` + alias + `.type, ` + alias + `.state_key, ` +
		alias + `.sender, ` + alias + `.origin_server_ts, ` + alias + `.received_ts, ` + alias + `.depth, ` + alias + `.json, ` +
		alias + `.snap_before, ` + alias + `.snap_after, ` + alias + `.unsigned_extra, ` + alias + `.txn_device, ` +
		alias + `.txn_id, ` + alias + `.redacted_by, ` + alias + `.outlier`
}

// MemberEventsInRooms returns the membership events of the given rooms
// with after < pos <= upto, oldest first.
func (db *DB) MemberEventsInRooms(ctx context.Context, roomIDs []string, after, upto int64) ([]Event, error) {
	var out []Event
	for _, roomID := range roomIDs {
		rows, err := db.r.QueryContext(ctx, `SELECT `+eventColumns+` FROM events
			WHERE room_id = $1 AND type = 'm.room.member' AND pos > $2 AND pos <= $3 AND outlier = 0 ORDER BY pos`, roomID, after, upto)
		if err != nil {
			return nil, fmt.Errorf("storage: member events: %w", err)
		}
		evs, err := scanEvents(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	return out, nil
}
