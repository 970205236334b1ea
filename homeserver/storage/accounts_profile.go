package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
)

// SetDisplayName sets (or, with "", clears) a user's displayname, or
// returns ErrNotFound for a user without a profile.
func (db *DB) SetDisplayName(ctx context.Context, userID, name string) error {
	return db.setProfile(ctx, `UPDATE profiles SET displayname = $1 WHERE user_id = $2`, userID, name)
}

// SetAvatarURL sets (or, with "", clears) a user's avatar URL, or returns
// ErrNotFound for a user without a profile.
func (db *DB) SetAvatarURL(ctx context.Context, userID, url string) error {
	return db.setProfile(ctx, `UPDATE profiles SET avatar_url = $1 WHERE user_id = $2`, userID, url)
}

func (db *DB) setProfile(ctx context.Context, q, userID, value string) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, q, nullString(value), userID)
		if err != nil {
			return fmt.Errorf("storage: set profile: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// CreateFilter stores a filter definition as given and returns its ID
// (spec: Client-Server API, "Filtering").
func (db *DB) CreateFilter(ctx context.Context, userID string, filter []byte) (string, error) {
	var id int64
	err := db.WriteTx(ctx, func(tx *Tx) error {
		err := tx.queryRow(ctx, `INSERT INTO filters (user_id, filter) VALUES ($1, $2) RETURNING filter_id`,
			userID, string(filter)).Scan(&id)
		if err != nil {
			return fmt.Errorf("storage: create filter: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(id, 10), nil
}

// Filter returns a filter of userID, or ErrNotFound (also for filter IDs
// that are not ours or not numbers).
func (db *DB) Filter(ctx context.Context, userID, filterID string) ([]byte, error) {
	id, err := strconv.ParseInt(filterID, 10, 64)
	if err != nil || id < 0 {
		return nil, ErrNotFound
	}
	// Filters never change once created.
	cacheKey := userID + "\x00" + filterID
	if f, ok := db.caches.filter(cacheKey); ok {
		return f, nil
	}
	var f string
	err = db.r.QueryRowContext(ctx, `SELECT filter FROM filters WHERE filter_id = $1 AND user_id = $2`, id, userID).Scan(&f)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("storage: filter: %w", err)
	}
	db.caches.putFilter(cacheKey, []byte(f))
	return []byte(f), nil
}
