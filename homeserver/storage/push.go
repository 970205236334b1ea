package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Pusher is one row of the pushers table (spec: Client-Server API,
// "GET /pushers"). Data is the pusher's data object as JSON.
type Pusher struct {
	UserID            string
	DeviceID          string
	AppID             string
	Pushkey           string
	Kind              string
	AppDisplayName    string
	DeviceDisplayName string
	ProfileTag        string
	Lang              string
	Data              []byte
	CreatedTS         int64
	// LastPos is the highest notification position already handled.
	LastPos int64
}

const pusherColumns = `user_id, device_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, created_ts, last_pos`

func scanPusher(s scanner) (Pusher, error) {
	var p Pusher
	var data string
	err := s.Scan(&p.UserID, &p.DeviceID, &p.AppID, &p.Pushkey, &p.Kind, &p.AppDisplayName, &p.DeviceDisplayName,
		&p.ProfileTag, &p.Lang, &data, &p.CreatedTS, &p.LastPos)
	p.Data = []byte(data)
	return p, err
}

func scanPushers(rows *sql.Rows) ([]Pusher, error) {
	defer rows.Close()
	var out []Pusher
	for rows.Next() {
		p, err := scanPusher(rows)
		if err != nil {
			return nil, fmt.Errorf("storage: pushers: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Pushers returns a user's pushers; all pushers when userID is "".
func (db *DB) Pushers(ctx context.Context, userID string) ([]Pusher, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+pusherColumns+` FROM pushers WHERE user_id = $1 OR $1 = '' ORDER BY created_ts, app_id, pushkey`, userID)
	if err != nil {
		return nil, fmt.Errorf("storage: pushers: %w", err)
	}
	return scanPushers(rows)
}

// Pusher returns one pusher, or ErrNotFound.
func (db *DB) Pusher(ctx context.Context, userID, appID, pushkey string) (Pusher, error) {
	p, err := scanPusher(db.r.QueryRowContext(ctx, `SELECT `+pusherColumns+` FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, userID, appID, pushkey))
	if errors.Is(err, sql.ErrNoRows) {
		return Pusher{}, ErrNotFound
	}
	if err != nil {
		return Pusher{}, fmt.Errorf("storage: pusher: %w", err)
	}
	return p, nil
}

// SetPusher adds or replaces p (unique per user by app ID and pushkey).
// Unless appendMode, pushers of other users with the same app ID and
// pushkey are removed (spec: "POST /pushers/set", append). A new pusher
// starts after every notification stored so far: it is not sent history.
// It returns the users whose pushers were removed.
func (db *DB) SetPusher(ctx context.Context, p Pusher, appendMode bool) ([]string, error) {
	var removed []string
	err := db.WriteTx(ctx, func(tx *Tx) error {
		if !appendMode {
			rows, err := tx.query(ctx, `SELECT user_id FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3`, p.AppID, p.Pushkey, p.UserID)
			if err != nil {
				return fmt.Errorf("storage: set pusher: %w", err)
			}
			if removed, err = scanStrings(rows); err != nil {
				return fmt.Errorf("storage: set pusher: %w", err)
			}
			if _, err := tx.exec(ctx, `DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3`, p.AppID, p.Pushkey, p.UserID); err != nil {
				return fmt.Errorf("storage: set pusher: %w", err)
			}
		}
		var last int64
		if err := tx.queryRow(ctx, `SELECT COALESCE(MAX(pos), 0) FROM notifications WHERE user_id = $1`, p.UserID).Scan(&last); err != nil {
			return fmt.Errorf("storage: set pusher: %w", err)
		}
		_, err := tx.exec(ctx, `INSERT INTO pushers (`+pusherColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
			ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET device_id = excluded.device_id, kind = excluded.kind,
			app_display_name = excluded.app_display_name, device_display_name = excluded.device_display_name,
			profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data`,
			p.UserID, p.DeviceID, p.AppID, p.Pushkey, p.Kind, p.AppDisplayName, p.DeviceDisplayName, p.ProfileTag, p.Lang,
			string(p.Data), p.CreatedTS, last)
		if err != nil {
			return fmt.Errorf("storage: set pusher: %w", err)
		}
		return nil
	})
	return removed, err
}

// DeletePusher removes one pusher; removing a missing one is no error.
func (db *DB) DeletePusher(ctx context.Context, userID, appID, pushkey string) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		if _, err := tx.exec(ctx, `DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, userID, appID, pushkey); err != nil {
			return fmt.Errorf("storage: delete pusher: %w", err)
		}
		return nil
	})
}

// AdvancePusher records that notifications up to pos were handled.
func (db *DB) AdvancePusher(ctx context.Context, userID, appID, pushkey string, pos int64) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		if _, err := tx.exec(ctx, `UPDATE pushers SET last_pos = $4 WHERE user_id = $1 AND app_id = $2 AND pushkey = $3 AND last_pos < $4`,
			userID, appID, pushkey, pos); err != nil {
			return fmt.Errorf("storage: advance pusher: %w", err)
		}
		return nil
	})
}

// Notification is one row of the notifications table.
type Notification struct {
	UserID    string
	Pos       int64
	RoomID    string
	EventID   string
	TS        int64
	Actions   []byte
	Highlight bool
	// Read is set by NotificationsPage: the user's read receipt in the
	// room is at or after the event.
	Read bool
}

// PushCursor returns the event position up to which push rules were
// evaluated; on first use it starts at the current position.
func (db *DB) PushCursor(ctx context.Context) (int64, error) { return db.namedCursor(ctx, "push") }

// namedCursor reads a row of federation_cursor, creating it at the current
// stream position.
func (db *DB) namedCursor(ctx context.Context, name string) (int64, error) {
	var pos int64
	err := db.r.QueryRowContext(ctx, `SELECT pos FROM federation_cursor WHERE name = $1`, name).Scan(&pos)
	if err == nil {
		return pos, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("storage: %s cursor: %w", name, err)
	}
	max, err := db.MaxPos(ctx)
	if err != nil {
		return 0, err
	}
	err = db.WriteTx(ctx, func(tx *Tx) error { return tx.setNamedCursor(ctx, name, max) })
	return max, err
}

func (tx *Tx) setNamedCursor(ctx context.Context, name string, pos int64) error {
	_, err := tx.exec(ctx, `INSERT INTO federation_cursor (name, pos) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET pos = excluded.pos`, name, pos)
	if err != nil {
		return fmt.Errorf("storage: %s cursor: %w", name, err)
	}
	return nil
}

// KeyNotifications names a user's notifications in a room: it moves when
// new ones are stored, so /sync sends the room's changed unread counts.
func KeyNotifications(userID, roomID string) string { return "nt|" + userID + "|" + roomID }

// AddNotifications stores notifications and moves the push cursor to
// cursor in one write. New notifications take a stream position of their
// own and touch their users (waking their /sync) and KeyNotifications.
func (db *DB) AddNotifications(ctx context.Context, ns []Notification, cursor int64) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		if len(ns) > 0 {
			if _, err := tx.nextPos(ctx); err != nil {
				return err
			}
		}
		for _, n := range ns {
			tx.touch(n.UserID, KeyNotifications(n.UserID, n.RoomID))
			hl := 0
			if n.Highlight {
				hl = 1
			}
			if _, err := tx.exec(ctx, `INSERT INTO notifications (user_id, pos, room_id, event_id, ts, actions, highlight)
				VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, pos) DO NOTHING`,
				n.UserID, n.Pos, n.RoomID, n.EventID, n.TS, string(n.Actions), hl); err != nil {
				return fmt.Errorf("storage: add notification: %w", err)
			}
		}
		return tx.setNamedCursor(ctx, "push", cursor)
	})
}

// readPosSQL is the stream position of n's user's read receipt in n's
// room (0 without one): notifications at or before it are read.
const readPosSQL = `COALESCE((SELECT MAX(e.pos) FROM receipts r JOIN events e ON e.event_id = r.event_id
	WHERE r.room_id = n.room_id AND r.user_id = n.user_id AND r.type IN ('m.read', 'm.read.private')), 0)`

// memberPosSQL is the position of the user's current membership event in
// the room: joining reads what came before (the invite, say), as a
// user's own event counts as read up to it (MSC2654).
const memberPosSQL = `COALESCE((SELECT c.pos FROM current_state c
	WHERE c.room_id = n.room_id AND c.type = 'm.room.member' AND c.state_key = n.user_id), 0)`

// unreadSQL holds for a notification after both (at the membership
// itself: an invite is unread until answered).
const unreadSQL = `n.pos > ` + readPosSQL + ` AND n.pos >= ` + memberPosSQL

const notificationColumns = `n.user_id, n.pos, n.room_id, n.event_id, n.ts, n.actions, n.highlight`

func scanNotifications(rows *sql.Rows, withRead bool) ([]Notification, error) {
	defer rows.Close()
	var out []Notification
	for rows.Next() {
		var n Notification
		var actions string
		var hl, read int
		dest := []any{&n.UserID, &n.Pos, &n.RoomID, &n.EventID, &n.TS, &actions, &hl}
		if withRead {
			dest = append(dest, &read)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("storage: notifications: %w", err)
		}
		n.Actions, n.Highlight, n.Read = []byte(actions), hl != 0, read != 0
		out = append(out, n)
	}
	return out, rows.Err()
}

// NotificationsAfter returns a user's notifications after pos, oldest
// first, at most limit.
func (db *DB) NotificationsAfter(ctx context.Context, userID string, pos int64, limit int) ([]Notification, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+notificationColumns+` FROM notifications n WHERE n.user_id = $1 AND n.pos > $2 ORDER BY n.pos LIMIT $3`, userID, pos, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: notifications: %w", err)
	}
	return scanNotifications(rows, false)
}

// NotificationsPage returns a user's notifications before pos (all when
// pos is 0), newest first, at most limit, with their read flags.
func (db *DB) NotificationsPage(ctx context.Context, userID string, before int64, limit int, highlightOnly bool) ([]Notification, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+notificationColumns+`, CASE WHEN `+unreadSQL+` THEN 0 ELSE 1 END
		FROM notifications n WHERE n.user_id = $1 AND ($2 = 0 OR n.pos < $2) AND ($3 = 0 OR n.highlight = 1)
		ORDER BY n.pos DESC LIMIT $4`, userID, before, boolInt(highlightOnly), limit)
	if err != nil {
		return nil, fmt.Errorf("storage: notifications: %w", err)
	}
	return scanNotifications(rows, true)
}

// UnreadCounts returns the user's unread notifications and highlights in
// a room; with roomID "" it counts every room.
func (db *DB) UnreadCounts(ctx context.Context, userID, roomID string) (notifications, highlights int, err error) {
	err = db.r.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(n.highlight), 0) FROM notifications n
		WHERE n.user_id = $1 AND (n.room_id = $2 OR $2 = '') AND `+unreadSQL, userID, roomID).Scan(&notifications, &highlights)
	if err != nil {
		return 0, 0, fmt.Errorf("storage: unread counts: %w", err)
	}
	return notifications, highlights, nil
}
