package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

const deviceColumns = `device_id, display_name, last_seen_ts, last_seen_ip`

func scanDevice(s scanner, userID string) (Device, error) {
	d := Device{UserID: userID}
	var name, ip sql.NullString
	if err := s.Scan(&d.DeviceID, &name, &d.LastSeenTS, &ip); err != nil {
		return Device{}, err
	}
	d.DisplayName, d.LastSeenIP = name.String, ip.String
	return d, nil
}

// Devices returns a user's devices ordered by device ID.
func (db *DB) Devices(ctx context.Context, userID string) ([]Device, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE user_id = $1 ORDER BY device_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("storage: devices: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows, userID)
		if err != nil {
			return nil, fmt.Errorf("storage: devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: devices: %w", err)
	}
	return out, nil
}

// DeviceByID returns one device of a user, or ErrNotFound.
func (db *DB) DeviceByID(ctx context.Context, userID, deviceID string) (Device, error) {
	d, err := scanDevice(db.r.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE user_id = $1 AND device_id = $2`,
		userID, deviceID), userID)
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, ErrNotFound
	}
	if err != nil {
		return Device{}, fmt.Errorf("storage: device: %w", err)
	}
	return d, nil
}

// SetDeviceDisplayName renames a device, or returns ErrNotFound. The name
// is part of what /keys/query returns, so the user's device list changes.
func (db *DB) SetDeviceDisplayName(ctx context.Context, userID, deviceID, name string) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, `UPDATE devices SET display_name = $1 WHERE user_id = $2 AND device_id = $3`,
			nullString(name), userID, deviceID)
		if err != nil {
			return fmt.Errorf("storage: rename device: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return tx.addDeviceListChange(ctx, userID)
	})
}
