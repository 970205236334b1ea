package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// User is an account of this server.
type User struct {
	UserID       string
	PasswordHash string
	IsAdmin      bool
	Deactivated  bool
}

// Device is a logged-in session of a user.
type Device struct {
	UserID      string
	DeviceID    string
	DisplayName string
	LastSeenTS  int64
	LastSeenIP  string
}

// CreateUser inserts a user with its profile (displayname = localpart).
// It returns ErrExists when the user ID is taken.
func (db *DB) CreateUser(ctx context.Context, u User, displayName string, nowMS int64) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, `INSERT INTO users (user_id, password_hash, is_admin, created_ts)
			VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO NOTHING`,
			u.UserID, u.PasswordHash, boolInt(u.IsAdmin), nowMS)
		if err != nil {
			return fmt.Errorf("storage: create user: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrExists
		}
		if _, err := tx.exec(ctx, `INSERT INTO profiles (user_id, displayname) VALUES ($1, $2)`, u.UserID, displayName); err != nil {
			return fmt.Errorf("storage: create profile: %w", err)
		}
		return nil
	})
}

// UserByID returns the user or ErrNotFound. The lookup is case-insensitive
// on the localpart, as user IDs are lower-cased on registration.
func (db *DB) UserByID(ctx context.Context, userID string) (User, error) {
	var u User
	var admin, deact int
	err := db.r.QueryRowContext(ctx, `SELECT user_id, password_hash, is_admin, deactivated FROM users WHERE user_id = $1`,
		strings.ToLower(userID)).Scan(&u.UserID, &u.PasswordHash, &admin, &deact)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("storage: user: %w", err)
	}
	u.IsAdmin, u.Deactivated = admin != 0, deact != 0
	return u, nil
}

// SetPassword replaces a user's password hash.
func (db *DB) SetPassword(ctx context.Context, userID, hash string) error {
	db.caches.tokenGen.Add(1)
	defer db.caches.tokenGen.Add(1) // after the commit too: see readCaches
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `UPDATE users SET password_hash = $1 WHERE user_id = $2`, hash, userID)
		if err != nil {
			return fmt.Errorf("storage: set password: %w", err)
		}
		return nil
	})
}

// CreateDevice creates or replaces a device with a fresh access token hash.
// Re-using a device ID (login with device_id) replaces its token, as the
// spec's login endpoint says, and keeps its keys.
func (db *DB) CreateDevice(ctx context.Context, d Device, tokenHash string, nowMS int64) error {
	db.caches.tokenGen.Add(1)       // re-using a device ID replaces its token
	defer db.caches.tokenGen.Add(1) // after the commit too: see readCaches
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `INSERT INTO devices (user_id, device_id, display_name, token_hash, created_ts, last_seen_ts)
			VALUES ($1, $2, $3, $4, $5, $5)
			ON CONFLICT (user_id, device_id) DO UPDATE SET token_hash = excluded.token_hash,
				display_name = COALESCE(excluded.display_name, devices.display_name)`,
			d.UserID, d.DeviceID, nullString(d.DisplayName), tokenHash, nowMS)
		if err != nil {
			return fmt.Errorf("storage: create device: %w", err)
		}
		return tx.addDeviceListChange(ctx, d.UserID)
	})
}

// DeviceByToken resolves an access token hash, or returns ErrNotFound.
func (db *DB) DeviceByToken(ctx context.Context, tokenHash string) (Device, error) {
	now := time.Now()
	if d, ok := db.caches.token(tokenHash, now); ok {
		return d, nil
	}
	gen := db.caches.tokenGen.Load()
	var d Device
	var name, ip sql.NullString
	err := db.r.QueryRowContext(ctx, `SELECT d.user_id, d.device_id, d.display_name, d.last_seen_ts, d.last_seen_ip
		FROM devices d JOIN users u ON u.user_id = d.user_id
		WHERE d.token_hash = $1 AND u.deactivated = 0`, tokenHash).
		Scan(&d.UserID, &d.DeviceID, &name, &d.LastSeenTS, &ip)
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, ErrNotFound
	}
	if err != nil {
		return Device{}, fmt.Errorf("storage: device by token: %w", err)
	}
	d.DisplayName, d.LastSeenIP = name.String, ip.String
	db.caches.putToken(tokenHash, gen, d, now)
	return d, nil
}

// DeleteDevices removes devices (all of the user's when deviceIDs is nil),
// their keys and pending to-device messages.
func (db *DB) DeleteDevices(ctx context.Context, userID string, deviceIDs []string) error {
	db.caches.tokenGen.Add(1)
	defer db.caches.tokenGen.Add(1) // after the commit too: see readCaches
	db.caches.keysGen.Add(1)
	defer db.caches.keysGen.Add(1)
	return db.WriteTx(ctx, func(tx *Tx) error {
		if deviceIDs == nil {
			rows, err := tx.query(ctx, `SELECT device_id FROM devices WHERE user_id = $1`, userID)
			if err != nil {
				return fmt.Errorf("storage: delete devices: %w", err)
			}
			deviceIDs, err = scanStrings(rows)
			if err != nil {
				return fmt.Errorf("storage: delete devices: %w", err)
			}
		}
		for _, id := range deviceIDs {
			for _, q := range []string{
				`DELETE FROM devices WHERE user_id = $1 AND device_id = $2`,
				`DELETE FROM device_keys WHERE user_id = $1 AND device_id = $2`,
				`DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2`,
				`DELETE FROM fallback_keys WHERE user_id = $1 AND device_id = $2`,
				`DELETE FROM to_device WHERE user_id = $1 AND device_id = $2`,
				// Pushers go with the device that set them (spec: "POST
				// /logout": pushers for the device are deleted).
				`DELETE FROM pushers WHERE user_id = $1 AND device_id = $2`,
			} {
				if _, err := tx.exec(ctx, q, userID, id); err != nil {
					return fmt.Errorf("storage: delete device: %w", err)
				}
			}
		}
		if len(deviceIDs) > 0 {
			return tx.addDeviceListChange(ctx, userID)
		}
		return nil
	})
}

// addDeviceListChange records that userID's device list changed, so that
// /sync tells the users sharing a room with them (device_lists.changed).
func (tx *Tx) addDeviceListChange(ctx context.Context, userID string) error {
	pos, err := tx.nextPos(ctx)
	if err != nil {
		return err
	}
	if _, err := tx.exec(ctx, `INSERT INTO device_list_changes (pos, user_id) VALUES ($1, $2)`, pos, userID); err != nil {
		return fmt.Errorf("storage: device list change: %w", err)
	}
	tx.touch(userID, KeyDeviceLists, KeyUserDevices(userID))
	return tx.touchUserRooms(ctx, userID)
}

// KeyUserDevices names one user's device list: the federation sender
// hears of a local user's change through it (m.device_list_update).
func KeyUserDevices(userID string) string { return KeyUserDevicesPrefix + userID }

// KeyUserDevicesPrefix starts every KeyUserDevices key.
const KeyUserDevicesPrefix = "dl|"

// RecordDeviceListChange records that a remote user's device list
// changed, as their server told us (m.device_list_update): /sync lists
// them in device_lists.changed for the users sharing a room with them.
func (db *DB) RecordDeviceListChange(ctx context.Context, userID string) error {
	return db.WriteTx(ctx, func(tx *Tx) error { return tx.addDeviceListChange(ctx, userID) })
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// DisplayProfile returns a user's displayname and avatar URL ("" when unset), or
// ErrNotFound for an unknown user.
func (db *DB) DisplayProfile(ctx context.Context, userID string) (displayName, avatarURL string, err error) {
	var n, a sql.NullString
	err = db.r.QueryRowContext(ctx, `SELECT displayname, avatar_url FROM profiles WHERE user_id = $1`, userID).Scan(&n, &a)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", ErrNotFound
	}
	if err != nil {
		return "", "", fmt.Errorf("storage: profile: %w", err)
	}
	return n.String, a.String, nil
}

// EnsureDevice creates a device with no usable access token if it does not
// exist (service devices, which never log in).
func (db *DB) EnsureDevice(ctx context.Context, userID, deviceID, displayName string, nowMS int64) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `INSERT INTO devices (user_id, device_id, display_name, token_hash, created_ts, last_seen_ts)
			VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (user_id, device_id) DO NOTHING`,
			userID, deviceID, nullString(displayName), "service:"+userID+"/"+deviceID, nowMS)
		if err != nil {
			return fmt.Errorf("storage: ensure device: %w", err)
		}
		return nil
	})
}
