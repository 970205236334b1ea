package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// KeyBackup is a key backup version with its key count and etag.
type KeyBackup struct {
	Version   int64
	Algorithm string
	AuthData  []byte
	Etag      int64
	Count     int64
}

// RoomKey is one backed-up Megolm session (spec: "KeyBackupData").
type RoomKey struct {
	RoomID            string
	SessionID         string
	FirstMessageIndex int64
	ForwardedCount    int64
	IsVerified        bool
	SessionData       []byte
}

// better reports whether k should replace old (spec: "Server-side key
// backups", storing keys: a verified key beats an unverified one, then
// the lower first_message_index, then the lower forwarded_count).
func (k RoomKey) better(old RoomKey) bool {
	if k.IsVerified != old.IsVerified {
		return k.IsVerified
	}
	if k.FirstMessageIndex != old.FirstMessageIndex {
		return k.FirstMessageIndex < old.FirstMessageIndex
	}
	return k.ForwardedCount < old.ForwardedCount
}

// CreateKeyBackup adds a new backup version, which becomes current.
func (db *DB) CreateKeyBackup(ctx context.Context, userID, algorithm string, authData []byte) (int64, error) {
	var v int64
	err := db.WriteTx(ctx, func(tx *Tx) error {
		if err := tx.queryRow(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM room_key_versions WHERE user_id = $1`, userID).Scan(&v); err != nil {
			return fmt.Errorf("storage: create key backup: %w", err)
		}
		if _, err := tx.exec(ctx, `INSERT INTO room_key_versions (user_id, version, algorithm, auth_data) VALUES ($1, $2, $3, $4)`,
			userID, v, algorithm, string(authData)); err != nil {
			return fmt.Errorf("storage: create key backup: %w", err)
		}
		return nil
	})
	return v, err
}

// currentKeyBackup is the user's newest version not deleted, 0 if none.
func currentKeyBackup(ctx context.Context, q querier, userID string) (int64, error) {
	var v int64
	err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM room_key_versions WHERE user_id = $1 AND deleted = 0`, userID).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("storage: key backup: %w", err)
	}
	return v, nil
}

// KeyBackup returns a version (the current one when version is 0), or
// ErrNotFound.
func (db *DB) KeyBackup(ctx context.Context, userID string, version int64) (KeyBackup, error) {
	if version == 0 {
		v, err := currentKeyBackup(ctx, db.r, userID)
		if err != nil {
			return KeyBackup{}, err
		}
		if v == 0 {
			return KeyBackup{}, ErrNotFound
		}
		version = v
	}
	var kb KeyBackup
	var auth string
	err := db.r.QueryRowContext(ctx, `SELECT version, algorithm, auth_data, etag,
		(SELECT COUNT(*) FROM room_keys k WHERE k.user_id = v.user_id AND k.version = v.version)
		FROM room_key_versions v WHERE user_id = $1 AND version = $2 AND deleted = 0`, userID, version).
		Scan(&kb.Version, &kb.Algorithm, &auth, &kb.Etag, &kb.Count)
	if errors.Is(err, sql.ErrNoRows) {
		return KeyBackup{}, ErrNotFound
	}
	if err != nil {
		return KeyBackup{}, fmt.Errorf("storage: key backup: %w", err)
	}
	kb.AuthData = []byte(auth)
	return kb, nil
}

// UpdateKeyBackup replaces a version's auth_data; ErrNotFound if the
// version does not exist.
func (db *DB) UpdateKeyBackup(ctx context.Context, userID string, version int64, authData []byte) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, `UPDATE room_key_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2 AND deleted = 0`,
			userID, version, string(authData))
		if err != nil {
			return fmt.Errorf("storage: update key backup: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// DeleteKeyBackup deletes a version and its keys; ErrNotFound if absent.
func (db *DB) DeleteKeyBackup(ctx context.Context, userID string, version int64) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, `UPDATE room_key_versions SET deleted = 1 WHERE user_id = $1 AND version = $2 AND deleted = 0`, userID, version)
		if err != nil {
			return fmt.Errorf("storage: delete key backup: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if _, err := tx.exec(ctx, `DELETE FROM room_keys WHERE user_id = $1 AND version = $2`, userID, version); err != nil {
			return fmt.Errorf("storage: delete key backup: %w", err)
		}
		return nil
	})
}

// checkCurrent fails unless version is the user's current backup:
// ErrNotFound with no backup, ErrWrongKeyBackupVersion (wrapping the
// current version's number in its message) otherwise.
func checkCurrent(ctx context.Context, tx *Tx, userID string, version int64) error {
	cur, err := currentKeyBackup(ctx, tx, userID)
	if err != nil {
		return err
	}
	if cur == 0 {
		return ErrNotFound
	}
	if cur != version {
		return &WrongKeyBackupVersionError{Current: cur}
	}
	return nil
}

// WrongKeyBackupVersionError names the current version; it matches
// ErrWrongKeyBackupVersion with errors.Is.
type WrongKeyBackupVersionError struct{ Current int64 }

func (e *WrongKeyBackupVersionError) Error() string {
	return fmt.Sprintf("%v (current is %d)", ErrWrongKeyBackupVersion, e.Current)
}

// Is makes errors.Is(err, ErrWrongKeyBackupVersion) hold.
func (e *WrongKeyBackupVersionError) Is(target error) bool { return target == ErrWrongKeyBackupVersion }

// PutRoomKeys stores keys in the current version, keeping an existing key
// where it is better than the new one, and returns the version's count
// and etag.
func (db *DB) PutRoomKeys(ctx context.Context, userID string, version int64, keys []RoomKey) (count, etag int64, err error) {
	err = db.WriteTx(ctx, func(tx *Tx) error {
		if err := checkCurrent(ctx, tx, userID, version); err != nil {
			return err
		}
		changed := false
		for _, k := range keys {
			old, err := scanRoomKey(tx.queryRow(ctx, `SELECT `+roomKeyColumns+` FROM room_keys
				WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4`, userID, version, k.RoomID, k.SessionID))
			if err == nil && !k.better(old) {
				continue
			}
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("storage: put room keys: %w", err)
			}
			if _, err := tx.exec(ctx, `INSERT INTO room_keys (user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
				first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count,
				is_verified = excluded.is_verified, session_data = excluded.session_data`,
				userID, version, k.RoomID, k.SessionID, k.FirstMessageIndex, k.ForwardedCount, boolInt(k.IsVerified), string(k.SessionData)); err != nil {
				return fmt.Errorf("storage: put room keys: %w", err)
			}
			changed = true
		}
		if changed {
			if _, err := tx.exec(ctx, `UPDATE room_key_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2`, userID, version); err != nil {
				return fmt.Errorf("storage: put room keys: %w", err)
			}
		}
		count, etag, err = countEtag(ctx, tx, userID, version)
		return err
	})
	return count, etag, err
}

func countEtag(ctx context.Context, tx *Tx, userID string, version int64) (count, etag int64, err error) {
	err = tx.queryRow(ctx, `SELECT etag, (SELECT COUNT(*) FROM room_keys k WHERE k.user_id = v.user_id AND k.version = v.version)
		FROM room_key_versions v WHERE user_id = $1 AND version = $2`, userID, version).Scan(&etag, &count)
	if err != nil {
		return 0, 0, fmt.Errorf("storage: room keys count: %w", err)
	}
	return count, etag, nil
}

const roomKeyColumns = `room_id, session_id, first_message_index, forwarded_count, is_verified, session_data`

func scanRoomKey(s scanner) (RoomKey, error) {
	var k RoomKey
	var verified int
	var data string
	err := s.Scan(&k.RoomID, &k.SessionID, &k.FirstMessageIndex, &k.ForwardedCount, &verified, &data)
	k.IsVerified, k.SessionData = verified != 0, []byte(data)
	return k, err
}

// RoomKeys returns a version's keys, narrowed to a room and a session
// when those are not "". ErrNotFound if the version does not exist.
func (db *DB) RoomKeys(ctx context.Context, userID string, version int64, roomID, sessionID string) ([]RoomKey, error) {
	if _, err := db.KeyBackup(ctx, userID, version); err != nil {
		return nil, err
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+roomKeyColumns+` FROM room_keys WHERE user_id = $1 AND version = $2
		AND ($3 = '' OR room_id = $3) AND ($4 = '' OR session_id = $4) ORDER BY room_id, session_id`, userID, version, roomID, sessionID)
	if err != nil {
		return nil, fmt.Errorf("storage: room keys: %w", err)
	}
	defer rows.Close()
	var out []RoomKey
	for rows.Next() {
		k, err := scanRoomKey(rows)
		if err != nil {
			return nil, fmt.Errorf("storage: room keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// DeleteRoomKeys deletes a version's keys (narrowed as in RoomKeys) and
// returns its count and etag. ErrNotFound if the version does not exist.
func (db *DB) DeleteRoomKeys(ctx context.Context, userID string, version int64, roomID, sessionID string) (count, etag int64, err error) {
	err = db.WriteTx(ctx, func(tx *Tx) error {
		var n int
		if err := tx.queryRow(ctx, `SELECT COUNT(*) FROM room_key_versions WHERE user_id = $1 AND version = $2 AND deleted = 0`, userID, version).Scan(&n); err != nil {
			return fmt.Errorf("storage: delete room keys: %w", err)
		}
		if n == 0 {
			return ErrNotFound
		}
		res, err := tx.exec(ctx, `DELETE FROM room_keys WHERE user_id = $1 AND version = $2
			AND ($3 = '' OR room_id = $3) AND ($4 = '' OR session_id = $4)`, userID, version, roomID, sessionID)
		if err != nil {
			return fmt.Errorf("storage: delete room keys: %w", err)
		}
		if d, _ := res.RowsAffected(); d > 0 {
			if _, err := tx.exec(ctx, `UPDATE room_key_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2`, userID, version); err != nil {
				return fmt.Errorf("storage: delete room keys: %w", err)
			}
		}
		count, etag, err = countEtag(ctx, tx, userID, version)
		return err
	})
	return count, etag, err
}
