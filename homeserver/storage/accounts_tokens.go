package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// CreateOpenIDToken stores the hash of an OpenID token (spec: Client-Server
// API, "OpenID") and sweeps expired ones.
func (db *DB) CreateOpenIDToken(ctx context.Context, tokenHash, userID string, expiresMS, nowMS int64) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		if _, err := tx.exec(ctx, `DELETE FROM openid_tokens WHERE expires_ts <= $1`, nowMS); err != nil {
			return fmt.Errorf("storage: openid token: %w", err)
		}
		if _, err := tx.exec(ctx, `INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)`,
			tokenHash, userID, expiresMS); err != nil {
			return fmt.Errorf("storage: openid token: %w", err)
		}
		return nil
	})
}

// OpenIDToken resolves an unexpired OpenID token hash to its user, or
// returns ErrNotFound.
func (db *DB) OpenIDToken(ctx context.Context, tokenHash string, nowMS int64) (string, error) {
	var userID string
	err := db.r.QueryRowContext(ctx, `SELECT user_id FROM openid_tokens WHERE token_hash = $1 AND expires_ts > $2`,
		tokenHash, nowMS).Scan(&userID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("storage: openid token: %w", err)
	}
	return userID, nil
}

// CreateRegistrationNonce stores a nonce for shared-secret registration,
// deletes those created before staleMS and, past keep stored nonces, the
// oldest (those created in the same millisecond as the keep-th newest
// stay, so the bound is keep plus one millisecond's worth).
func (db *DB) CreateRegistrationNonce(ctx context.Context, nonce string, nowMS, staleMS int64, keep int) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		if _, err := tx.exec(ctx, `DELETE FROM registration_nonces WHERE created_ts < $1`, staleMS); err != nil {
			return fmt.Errorf("storage: registration nonce: %w", err)
		}
		if _, err := tx.exec(ctx, `INSERT INTO registration_nonces (nonce, created_ts) VALUES ($1, $2)`, nonce, nowMS); err != nil {
			return fmt.Errorf("storage: registration nonce: %w", err)
		}
		if _, err := tx.exec(ctx, `DELETE FROM registration_nonces WHERE created_ts <
			(SELECT created_ts FROM registration_nonces ORDER BY created_ts DESC LIMIT 1 OFFSET $1)`, keep-1); err != nil {
			return fmt.Errorf("storage: registration nonce: %w", err)
		}
		return nil
	})
}

// RegistrationNonceCount is the number of stored registration nonces.
func (db *DB) RegistrationNonceCount(ctx context.Context) (int, error) {
	var n int
	if err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM registration_nonces`).Scan(&n); err != nil {
		return 0, fmt.Errorf("storage: registration nonces: %w", err)
	}
	return n, nil
}

// ConsumeRegistrationNonce deletes a nonce and reports whether it existed
// and was created at or after notBeforeMS; otherwise it returns
// ErrNotFound. A nonce is good for one attempt, successful or not.
func (db *DB) ConsumeRegistrationNonce(ctx context.Context, nonce string, notBeforeMS int64) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, `DELETE FROM registration_nonces WHERE nonce = $1 AND created_ts >= $2`, nonce, notBeforeMS)
		if err != nil {
			return fmt.Errorf("storage: registration nonce: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// UpdateAccountData reads, changes and writes one account data entry in a
// single write transaction, so that concurrent read-modify-write requests
// (push rule changes) do not lose each other's updates. fn gets nil when
// the entry does not exist. It returns the new stream position.
func (db *DB) UpdateAccountData(ctx context.Context, userID, roomID, evType string, fn func(old []byte) ([]byte, error)) (int64, error) {
	var pos int64
	err := db.WriteTx(ctx, func(tx *Tx) error {
		q := `SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3`
		if tx.db.dialect.name == postgres.name {
			q += ` FOR UPDATE`
		}
		var old sql.NullString
		err := tx.queryRow(ctx, q, userID, roomID, evType).Scan(&old)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("storage: account data: %w", err)
		}
		var prev []byte
		if old.Valid {
			prev = []byte(old.String)
		}
		content, err := fn(prev)
		if err != nil {
			return err
		}
		if pos, err = tx.nextPos(ctx); err != nil {
			return err
		}
		tx.touch(userID, KeyAccountData(userID))
		_, err = tx.exec(ctx, `INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, pos = excluded.pos`,
			userID, roomID, evType, string(content), pos)
		if err != nil {
			return fmt.Errorf("storage: account data: %w", err)
		}
		return nil
	})
	return pos, err
}
