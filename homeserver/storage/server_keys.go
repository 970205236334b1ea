package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ServerKey is one remote server signing key as last fetched (spec:
// Server-Server API, "Retrieving server keys"). A current key has
// ExpiredTS 0 and the ValidUntilTS of the document it came in; an old key
// (from old_verify_keys) has ValidUntilTS 0 and its ExpiredTS.
type ServerKey struct {
	ServerName   string
	KeyID        string
	PublicKey    []byte
	ValidUntilTS int64
	ExpiredTS    int64
	FetchedTS    int64
}

// ServerKeyResponse is a server's last self-signed key document, as the
// notary serves it again.
type ServerKeyResponse struct {
	ServerName   string
	JSON         []byte
	ValidUntilTS int64
	FetchedTS    int64
}

// StoreServerKeys records keys, each replacing the row of its server and
// key ID: the last fetch is what the server says now.
func (db *DB) StoreServerKeys(ctx context.Context, keys []ServerKey) error {
	if len(keys) == 0 {
		return nil
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		for _, k := range keys {
			_, err := tx.exec(ctx, `INSERT INTO server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts)
				VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (server_name, key_id) DO UPDATE SET public_key = excluded.public_key,
					valid_until_ts = excluded.valid_until_ts, expired_ts = excluded.expired_ts, fetched_ts = excluded.fetched_ts`,
				k.ServerName, k.KeyID, k.PublicKey, k.ValidUntilTS, k.ExpiredTS, k.FetchedTS)
			if err != nil {
				return fmt.Errorf("storage: store server keys: %w", err)
			}
		}
		return nil
	})
}

// ServerKey returns one stored key of server, or ErrNotFound.
func (db *DB) ServerKey(ctx context.Context, server, keyID string) (ServerKey, error) {
	k := ServerKey{ServerName: server, KeyID: keyID}
	err := db.r.QueryRowContext(ctx, `SELECT public_key, valid_until_ts, expired_ts, fetched_ts FROM server_keys WHERE server_name = $1 AND key_id = $2`,
		server, keyID).Scan(&k.PublicKey, &k.ValidUntilTS, &k.ExpiredTS, &k.FetchedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return ServerKey{}, ErrNotFound
	}
	if err != nil {
		return ServerKey{}, fmt.Errorf("storage: server key: %w", err)
	}
	return k, nil
}

// StoreServerKeyResponse records server's last key document.
func (db *DB) StoreServerKeyResponse(ctx context.Context, r ServerKeyResponse) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `INSERT INTO server_key_responses (server_name, response, valid_until_ts, fetched_ts) VALUES ($1, $2, $3, $4)
			ON CONFLICT (server_name) DO UPDATE SET response = excluded.response, valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts`,
			r.ServerName, string(r.JSON), r.ValidUntilTS, r.FetchedTS)
		if err != nil {
			return fmt.Errorf("storage: store server key response: %w", err)
		}
		return nil
	})
}

// ServerKeyResponseFor returns server's last key document, or ErrNotFound.
func (db *DB) ServerKeyResponseFor(ctx context.Context, server string) (ServerKeyResponse, error) {
	r := ServerKeyResponse{ServerName: server}
	var js string
	err := db.r.QueryRowContext(ctx, `SELECT response, valid_until_ts, fetched_ts FROM server_key_responses WHERE server_name = $1`,
		server).Scan(&js, &r.ValidUntilTS, &r.FetchedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return ServerKeyResponse{}, ErrNotFound
	}
	if err != nil {
		return ServerKeyResponse{}, fmt.Errorf("storage: server key response: %w", err)
	}
	r.JSON = []byte(js)
	return r, nil
}
