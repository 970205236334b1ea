package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// AccountData is one account data entry; RoomID is "" for global data.
type AccountData struct {
	RoomID  string
	Type    string
	Content []byte
	Pos     int64
}

// PutAccountData stores account data and returns its stream position.
func (db *DB) PutAccountData(ctx context.Context, userID, roomID, evType string, content []byte) (int64, error) {
	return db.UpdateAccountData(ctx, userID, roomID, evType, func([]byte) ([]byte, error) { return content, nil })
}

// GetAccountData returns one entry's content, or ErrNotFound.
func (db *DB) GetAccountData(ctx context.Context, userID, roomID, evType string) ([]byte, error) {
	var c string
	err := db.r.QueryRowContext(ctx, `SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3`,
		userID, roomID, evType).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("storage: account data: %w", err)
	}
	return []byte(c), nil
}

// AccountDataBetween returns a user's account data changed in (after, upto].
func (db *DB) AccountDataBetween(ctx context.Context, userID string, after, upto int64) ([]AccountData, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT room_id, type, content, pos FROM account_data
		WHERE user_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos`, userID, after, upto)
	if err != nil {
		return nil, fmt.Errorf("storage: account data: %w", err)
	}
	defer rows.Close()
	var out []AccountData
	for rows.Next() {
		var a AccountData
		var c string
		if err := rows.Scan(&a.RoomID, &a.Type, &c, &a.Pos); err != nil {
			return nil, fmt.Errorf("storage: account data: %w", err)
		}
		a.Content = []byte(c)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Receipt is a read receipt or marker of a user in a room.
type Receipt struct {
	RoomID   string
	UserID   string
	Type     string
	ThreadID string
	EventID  string
	TS       int64
	Pos      int64
}

// PutReceipt stores a receipt (replacing the user's previous one of that
// type and thread) and returns its stream position.
func (db *DB) PutReceipt(ctx context.Context, r Receipt) (int64, error) {
	var pos int64
	err := db.WriteTx(ctx, func(tx *Tx) error {
		var err error
		if pos, err = tx.nextPos(ctx); err != nil {
			return err
		}
		tx.touch(r.RoomID)
		_, err = tx.exec(ctx, `INSERT INTO receipts (room_id, user_id, type, thread_id, event_id, ts, pos) VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (room_id, user_id, type, thread_id) DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, pos = excluded.pos`,
			r.RoomID, r.UserID, r.Type, r.ThreadID, r.EventID, r.TS, pos)
		if err != nil {
			return fmt.Errorf("storage: receipt: %w", err)
		}
		return nil
	})
	return pos, err
}

// ReceiptsBetween returns a room's receipts changed in (after, upto].
func (db *DB) ReceiptsBetween(ctx context.Context, roomID string, after, upto int64) ([]Receipt, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT room_id, user_id, type, thread_id, event_id, ts, pos FROM receipts
		WHERE room_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos`, roomID, after, upto)
	if err != nil {
		return nil, fmt.Errorf("storage: receipts: %w", err)
	}
	defer rows.Close()
	var out []Receipt
	for rows.Next() {
		var r Receipt
		if err := rows.Scan(&r.RoomID, &r.UserID, &r.Type, &r.ThreadID, &r.EventID, &r.TS, &r.Pos); err != nil {
			return nil, fmt.Errorf("storage: receipts: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ToDevice is a send-to-device message waiting for its device.
type ToDevice struct {
	Pos      int64
	UserID   string
	DeviceID string
	Sender   string
	Type     string
	Content  []byte
}

// PutToDevice queues messages atomically and returns the last position used.
// A DeviceID of "*" is expanded to every device of the user.
func (db *DB) PutToDevice(ctx context.Context, msgs []ToDevice) (int64, error) {
	var last int64
	err := db.WriteTx(ctx, func(tx *Tx) error {
		for _, m := range msgs {
			targets := []string{m.DeviceID}
			if m.DeviceID == "*" {
				rows, err := tx.query(ctx, `SELECT device_id FROM devices WHERE user_id = $1`, m.UserID)
				if err != nil {
					return fmt.Errorf("storage: to-device: %w", err)
				}
				if targets, err = scanStrings(rows); err != nil {
					return fmt.Errorf("storage: to-device: %w", err)
				}
			}
			for _, dev := range targets {
				pos, err := tx.nextPos(ctx)
				if err != nil {
					return err
				}
				tx.touch(m.UserID, KeyToDevice(m.UserID))
				if _, err := tx.exec(ctx, `INSERT INTO to_device (pos, user_id, device_id, sender, type, content) VALUES ($1, $2, $3, $4, $5, $6)`,
					pos, m.UserID, dev, m.Sender, m.Type, string(m.Content)); err != nil {
					return fmt.Errorf("storage: to-device: %w", err)
				}
				last = pos
			}
		}
		return nil
	})
	return last, err
}

// ToDeviceUpTo returns a device's queued messages with pos <= upto, oldest
// first, at most limit of them.
func (db *DB) ToDeviceUpTo(ctx context.Context, userID, deviceID string, upto int64, limit int) ([]ToDevice, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT pos, user_id, device_id, sender, type, content FROM to_device
		WHERE user_id = $1 AND device_id = $2 AND pos <= $3 ORDER BY pos LIMIT $4`, userID, deviceID, upto, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: to-device: %w", err)
	}
	defer rows.Close()
	var out []ToDevice
	for rows.Next() {
		var m ToDevice
		var c string
		if err := rows.Scan(&m.Pos, &m.UserID, &m.DeviceID, &m.Sender, &m.Type, &c); err != nil {
			return nil, fmt.Errorf("storage: to-device: %w", err)
		}
		m.Content = []byte(c)
		out = append(out, m)
	}
	return out, rows.Err()
}

// AckToDevice deletes a device's messages with pos <= upto: the client
// acknowledged them by syncing with a since token past them.
func (db *DB) AckToDevice(ctx context.Context, userID, deviceID string, upto int64) error {
	var n int
	if err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM to_device WHERE user_id = $1 AND device_id = $2 AND pos <= $3 LIMIT 1) t`,
		userID, deviceID, upto).Scan(&n); err != nil || n == 0 {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `DELETE FROM to_device WHERE user_id = $1 AND device_id = $2 AND pos <= $3`, userID, deviceID, upto)
		return err
	})
}

// DeviceListChangesBetween returns the users whose device lists changed in
// (after, upto].
func (db *DB) DeviceListChangesBetween(ctx context.Context, after, upto int64) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT DISTINCT user_id FROM device_list_changes WHERE pos > $1 AND pos <= $2`, after, upto)
	if err != nil {
		return nil, fmt.Errorf("storage: device list changes: %w", err)
	}
	return scanStrings(rows)
}

// ClaimTxn records a client transaction ID that produces no event (e.g.
// sendToDevice) and reports whether it is new.
func (db *DB) ClaimTxn(ctx context.Context, userID, deviceID, txnID string) (bool, error) {
	fresh := false
	err := db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, `INSERT INTO txns (user_id, device_id, txn_id, event_id) VALUES ($1, $2, $3, '')
			ON CONFLICT (user_id, device_id, txn_id) DO NOTHING`, userID, deviceID, txnID)
		if err != nil {
			return fmt.Errorf("storage: claim txn: %w", err)
		}
		n, _ := res.RowsAffected()
		fresh = n == 1
		return nil
	})
	return fresh, err
}
