package storage

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// End-to-end encryption key storage (spec: Client-Server API, "End-to-End
// Encryption", "Key management API"). Keys are stored as the JSON objects
// the clients signed; the server never alters a signed part of them.

// KeyUpload is one validated POST /keys/upload body.
type KeyUpload struct {
	// DeviceKeys is the device's signed identity keys object; nil when the
	// request had none.
	DeviceKeys []byte
	// OneTimeKeys and FallbackKeys map "<algorithm>:<key id>" to the key
	// (a JSON string or a signed key object).
	OneTimeKeys  map[string][]byte
	FallbackKeys map[string][]byte
}

// UploadKeys stores a device's keys and returns its one-time key counts by
// algorithm. New or changed device keys record a device list change. A
// one-time key ID already stored with other content fails with
// ErrKeyConflict; a fallback key replaces the algorithm's previous one.
func (db *DB) UploadKeys(ctx context.Context, userID, deviceID string, up KeyUpload) (map[string]int, error) {
	db.caches.keysGen.Add(1)
	defer db.caches.keysGen.Add(1) // after the commit too: see readCaches
	var counts map[string]int
	err := db.WriteTx(ctx, func(tx *Tx) error {
		if up.DeviceKeys != nil {
			var old string
			err := tx.queryRow(ctx, `SELECT keys FROM device_keys WHERE user_id = $1 AND device_id = $2`, userID, deviceID).Scan(&old)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("storage: device keys: %w", err)
			}
			if err != nil || !sameJSON([]byte(old), up.DeviceKeys) {
				if _, err := tx.exec(ctx, `INSERT INTO device_keys (user_id, device_id, keys) VALUES ($1, $2, $3)
					ON CONFLICT (user_id, device_id) DO UPDATE SET keys = excluded.keys`, userID, deviceID, string(up.DeviceKeys)); err != nil {
					return fmt.Errorf("storage: device keys: %w", err)
				}
				if err := tx.addDeviceListChange(ctx, userID); err != nil {
					return err
				}
			}
		}
		for _, keyID := range sortedKeys(up.OneTimeKeys) {
			key := up.OneTimeKeys[keyID]
			var old string
			err := tx.queryRow(ctx, `SELECT key_json FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND key_id = $3`,
				userID, deviceID, keyID).Scan(&old)
			switch {
			case err == nil:
				if !sameJSON([]byte(old), key) {
					return fmt.Errorf("%w: %s", ErrKeyConflict, keyID)
				}
				continue
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("storage: one-time keys: %w", err)
			}
			if _, err := tx.exec(ctx, `INSERT INTO one_time_keys (user_id, device_id, key_id, algorithm, key_json) VALUES ($1, $2, $3, $4, $5)`,
				userID, deviceID, keyID, keyAlgorithm(keyID), string(key)); err != nil {
				return fmt.Errorf("storage: one-time keys: %w", err)
			}
		}
		for _, keyID := range sortedKeys(up.FallbackKeys) {
			key := up.FallbackKeys[keyID]
			alg := keyAlgorithm(keyID)
			var oldID, oldJSON string
			err := tx.queryRow(ctx, `SELECT key_id, key_json FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3`,
				userID, deviceID, alg).Scan(&oldID, &oldJSON)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("storage: fallback keys: %w", err)
			}
			if err == nil && oldID == keyID && sameJSON([]byte(oldJSON), key) {
				continue // the same key again keeps its used flag
			}
			if _, err := tx.exec(ctx, `INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) VALUES ($1, $2, $3, $4, $5, 0)
				ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = 0`,
				userID, deviceID, alg, keyID, string(key)); err != nil {
				return fmt.Errorf("storage: fallback keys: %w", err)
			}
		}
		var err error
		counts, err = oneTimeKeyCounts(ctx, tx.tx, userID, deviceID)
		return err
	})
	return counts, err
}

// keyAlgorithm is the algorithm part of "<algorithm>:<key id>".
func keyAlgorithm(keyID string) string {
	if i := strings.IndexByte(keyID, ':'); i >= 0 {
		return keyID[:i]
	}
	return keyID
}

// OneTimeKeyCounts returns how many unclaimed one-time keys a device has,
// by algorithm (for /sync's device_one_time_keys_count). One indexed
// GROUP BY over the device's keys.
func (db *DB) OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error) {
	return oneTimeKeyCounts(ctx, db.r, userID, deviceID)
}

func oneTimeKeyCounts(ctx context.Context, q querier, userID, deviceID string) (map[string]int, error) {
	rows, err := q.QueryContext(ctx, `SELECT algorithm, COUNT(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm`,
		userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("storage: one-time key counts: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var alg string
		var n int
		if err := rows.Scan(&alg, &n); err != nil {
			return nil, fmt.Errorf("storage: one-time key counts: %w", err)
		}
		out[alg] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: one-time key counts: %w", err)
	}
	return out, nil
}

// SyncKeyCounts returns OneTimeKeyCounts and UnusedFallbackKeyTypes
// together, cached until keys are next uploaded, claimed or deleted: every
// /sync response carries them. Callers must not modify the results. In
// cluster mode nothing is cached: another node may claim or upload keys.
func (db *DB) SyncKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, []string, error) {
	key := userID + "\x00" + deviceID
	if db.cluster {
		counts, err := db.OneTimeKeyCounts(ctx, userID, deviceID)
		if err != nil {
			return nil, nil, err
		}
		fallback, err := db.UnusedFallbackKeyTypes(ctx, userID, deviceID)
		return counts, fallback, err
	}
	if e, ok := db.caches.keyCount(key); ok {
		return e.counts, e.fallback, nil
	}
	gen := db.caches.keysGen.Load()
	counts, err := db.OneTimeKeyCounts(ctx, userID, deviceID)
	if err != nil {
		return nil, nil, err
	}
	fallback, err := db.UnusedFallbackKeyTypes(ctx, userID, deviceID)
	if err != nil {
		return nil, nil, err
	}
	db.caches.putKeyCount(key, keyCountEntry{gen: gen, counts: counts, fallback: fallback})
	return counts, fallback, nil
}

// UnusedFallbackKeyTypes returns the algorithms for which a device has a
// fallback key that nobody claimed yet (for /sync's
// device_unused_fallback_key_types), sorted.
func (db *DB) UnusedFallbackKeyTypes(ctx context.Context, userID, deviceID string) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT algorithm FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND used = 0 ORDER BY algorithm`,
		userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("storage: fallback keys: %w", err)
	}
	out, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("storage: fallback keys: %w", err)
	}
	return out, nil
}

// DeviceKeys is a device's uploaded identity keys with its display name.
type DeviceKeys struct {
	UserID      string
	DeviceID    string
	DisplayName string
	Keys        []byte
}

// WithUnsigned is the device's keys object as /keys/query answers it
// (both APIs): with unsigned.device_display_name added (Client-Server API,
// "POST /_matrix/client/v3/keys/query").
func (k DeviceKeys) WithUnsigned() (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(k.Keys, &m); err != nil {
		return nil, err
	}
	unsigned := map[string]string{}
	if k.DisplayName != "" {
		unsigned["device_display_name"] = k.DisplayName
	}
	raw, _ := json.Marshal(unsigned)
	m["unsigned"] = raw
	return json.Marshal(m)
}

// QueryDeviceKeys returns the uploaded keys of a user's devices: all of
// them when deviceIDs is empty. Devices without keys are left out.
func (db *DB) QueryDeviceKeys(ctx context.Context, userID string, deviceIDs []string) ([]DeviceKeys, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT k.device_id, d.display_name, k.keys FROM device_keys k
		JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
		WHERE k.user_id = $1 ORDER BY k.device_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("storage: query keys: %w", err)
	}
	defer rows.Close()
	want := map[string]bool{}
	for _, d := range deviceIDs {
		want[d] = true
	}
	var out []DeviceKeys
	for rows.Next() {
		k := DeviceKeys{UserID: userID}
		var name sql.NullString
		var keys string
		if err := rows.Scan(&k.DeviceID, &name, &keys); err != nil {
			return nil, fmt.Errorf("storage: query keys: %w", err)
		}
		if len(want) > 0 && !want[k.DeviceID] {
			continue
		}
		k.DisplayName, k.Keys = name.String, []byte(keys)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: query keys: %w", err)
	}
	return out, nil
}

// KeyClaim asks for one key of Algorithm from a device.
type KeyClaim struct {
	UserID, DeviceID, Algorithm string
}

// ClaimedKey is a key handed out by ClaimKeys.
type ClaimedKey struct {
	UserID, DeviceID string
	KeyID            string // "<algorithm>:<key id>"
	Key              []byte
	Fallback         bool
}

// ClaimedByDevice arranges claimed keys as /keys/claim answers them (both
// APIs): user ID → device ID → key ID → key.
func ClaimedByDevice(keys []ClaimedKey) map[string]map[string]map[string]json.RawMessage {
	out := map[string]map[string]map[string]json.RawMessage{}
	for _, k := range keys {
		if out[k.UserID] == nil {
			out[k.UserID] = map[string]map[string]json.RawMessage{}
		}
		out[k.UserID][k.DeviceID] = map[string]json.RawMessage{k.KeyID: k.Key}
	}
	return out
}

// ClaimKeys hands out and deletes one one-time key per claim; when a
// device has none of the algorithm left it hands out the device's fallback
// key instead and marks it used (fallback keys are not deleted: spec,
// "One-time and fallback keys"). Claims with no key at all are left out of
// the result.
func (db *DB) ClaimKeys(ctx context.Context, claims []KeyClaim) ([]ClaimedKey, error) {
	// A stable order keeps concurrent claims from taking row locks in
	// different orders on PostgreSQL.
	claims = slices.Clone(claims)
	slices.SortFunc(claims, func(a, b KeyClaim) int {
		return cmp.Or(cmp.Compare(a.UserID, b.UserID), cmp.Compare(a.DeviceID, b.DeviceID), cmp.Compare(a.Algorithm, b.Algorithm))
	})
	db.caches.keysGen.Add(1)
	defer db.caches.keysGen.Add(1) // after the commit too: see readCaches
	var out []ClaimedKey
	err := db.WriteTx(ctx, func(tx *Tx) error {
		out = out[:0]
		for _, cl := range claims {
			k, ok, err := claimOneTimeKey(ctx, tx, cl)
			if err != nil {
				return err
			}
			if !ok {
				if k, ok, err = claimFallbackKey(ctx, tx, cl); err != nil {
					return err
				}
			}
			if ok {
				out = append(out, k)
			}
		}
		return nil
	})
	return out, err
}

func claimOneTimeKey(ctx context.Context, tx *Tx, cl KeyClaim) (ClaimedKey, bool, error) {
	// Another process sharing the PostgreSQL database may take the same
	// row first: the DELETE then affects nothing and we pick again.
	for range 8 {
		k := ClaimedKey{UserID: cl.UserID, DeviceID: cl.DeviceID}
		var key string
		err := tx.queryRow(ctx, `SELECT key_id, key_json FROM one_time_keys
			WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 ORDER BY key_id LIMIT 1`,
			cl.UserID, cl.DeviceID, cl.Algorithm).Scan(&k.KeyID, &key)
		if errors.Is(err, sql.ErrNoRows) {
			return ClaimedKey{}, false, nil
		}
		if err != nil {
			return ClaimedKey{}, false, fmt.Errorf("storage: claim key: %w", err)
		}
		res, err := tx.exec(ctx, `DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND key_id = $3`,
			cl.UserID, cl.DeviceID, k.KeyID)
		if err != nil {
			return ClaimedKey{}, false, fmt.Errorf("storage: claim key: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			k.Key = []byte(key)
			return k, true, nil
		}
	}
	return ClaimedKey{}, false, nil
}

func claimFallbackKey(ctx context.Context, tx *Tx, cl KeyClaim) (ClaimedKey, bool, error) {
	k := ClaimedKey{UserID: cl.UserID, DeviceID: cl.DeviceID, Fallback: true}
	var key string
	err := tx.queryRow(ctx, `SELECT key_id, key_json FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3`,
		cl.UserID, cl.DeviceID, cl.Algorithm).Scan(&k.KeyID, &key)
	if errors.Is(err, sql.ErrNoRows) {
		return ClaimedKey{}, false, nil
	}
	if err != nil {
		return ClaimedKey{}, false, fmt.Errorf("storage: claim fallback key: %w", err)
	}
	if _, err := tx.exec(ctx, `UPDATE fallback_keys SET used = 1 WHERE user_id = $1 AND device_id = $2 AND algorithm = $3`,
		cl.UserID, cl.DeviceID, cl.Algorithm); err != nil {
		return ClaimedKey{}, false, fmt.Errorf("storage: claim fallback key: %w", err)
	}
	k.Key = []byte(key)
	return k, true, nil
}

// Cross-signing key types as stored and as named in /keys/device_signing/upload.
const (
	CrossSigningMaster      = "master"
	CrossSigningSelfSigning = "self_signing"
	CrossSigningUserSigning = "user_signing"
)

// CrossSigningKeys returns a user's cross-signing keys by type (master,
// self_signing, user_signing); missing types are absent.
func (db *DB) CrossSigningKeys(ctx context.Context, userID string) (map[string][]byte, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT key_type, key_json FROM cross_signing_keys WHERE user_id = $1`, userID)
	if err != nil {
		return nil, fmt.Errorf("storage: cross-signing keys: %w", err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var typ, key string
		if err := rows.Scan(&typ, &key); err != nil {
			return nil, fmt.Errorf("storage: cross-signing keys: %w", err)
		}
		out[typ] = []byte(key)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: cross-signing keys: %w", err)
	}
	return out, nil
}

// PutCrossSigningKeys stores cross-signing keys by type and records a
// device list change for the user when any of them is new.
func (db *DB) PutCrossSigningKeys(ctx context.Context, userID string, keys map[string][]byte) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		changed := false
		for _, typ := range sortedKeys(keys) {
			key := keys[typ]
			var old string
			err := tx.queryRow(ctx, `SELECT key_json FROM cross_signing_keys WHERE user_id = $1 AND key_type = $2`, userID, typ).Scan(&old)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("storage: cross-signing keys: %w", err)
			}
			if err == nil && sameJSON([]byte(old), key) {
				continue
			}
			if _, err := tx.exec(ctx, `INSERT INTO cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3)
				ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json`, userID, typ, string(key)); err != nil {
				return fmt.Errorf("storage: cross-signing keys: %w", err)
			}
			changed = true
		}
		if changed {
			return tx.addDeviceListChange(ctx, userID)
		}
		return nil
	})
}

// AddSignatures merges signatures ({signer user ID: {key ID: signature}})
// into one of userID's keys: the device keys of device keyID, or else the
// cross-signing key whose public key is keyID. It returns ErrNotFound when
// neither exists, and records a device list change for userID.
func (db *DB) AddSignatures(ctx context.Context, userID, keyID string, sigs map[string]map[string]string) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		var keys string
		err := tx.queryRow(ctx, `SELECT keys FROM device_keys WHERE user_id = $1 AND device_id = $2`, userID, keyID).Scan(&keys)
		if err == nil {
			merged, err := mergeSignatures([]byte(keys), sigs)
			if err != nil {
				return err
			}
			if _, err := tx.exec(ctx, `UPDATE device_keys SET keys = $1 WHERE user_id = $2 AND device_id = $3`, string(merged), userID, keyID); err != nil {
				return fmt.Errorf("storage: signatures: %w", err)
			}
			return tx.addDeviceListChange(ctx, userID)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("storage: signatures: %w", err)
		}
		rows, err := tx.query(ctx, `SELECT key_type, key_json FROM cross_signing_keys WHERE user_id = $1`, userID)
		if err != nil {
			return fmt.Errorf("storage: signatures: %w", err)
		}
		var typ, key string
		found := false
		for !found && rows.Next() {
			if err := rows.Scan(&typ, &key); err != nil {
				rows.Close()
				return fmt.Errorf("storage: signatures: %w", err)
			}
			found = hasPublicKey([]byte(key), keyID)
		}
		rows.Close()
		if !found {
			return ErrNotFound
		}
		merged, err := mergeSignatures([]byte(key), sigs)
		if err != nil {
			return err
		}
		if _, err := tx.exec(ctx, `UPDATE cross_signing_keys SET key_json = $1 WHERE user_id = $2 AND key_type = $3`, string(merged), userID, typ); err != nil {
			return fmt.Errorf("storage: signatures: %w", err)
		}
		return tx.addDeviceListChange(ctx, userID)
	})
}

// hasPublicKey reports whether a cross-signing key object lists pub among
// its "keys" values.
func hasPublicKey(obj []byte, pub string) bool {
	var k struct {
		Keys map[string]string `json:"keys"`
	}
	if json.Unmarshal(obj, &k) != nil {
		return false
	}
	for _, v := range k.Keys {
		if v == pub {
			return true
		}
	}
	return false
}

// mergeSignatures adds sigs to the "signatures" member of a signed JSON
// object, keeping every other member byte for byte.
func mergeSignatures(obj []byte, sigs map[string]map[string]string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, fmt.Errorf("storage: signatures: stored key is not an object: %w", err)
	}
	var have map[string]map[string]string
	if raw, ok := m["signatures"]; ok {
		_ = json.Unmarshal(raw, &have) // a malformed member is replaced
	}
	if have == nil {
		have = map[string]map[string]string{}
	}
	for signer, byKey := range sigs {
		if have[signer] == nil {
			have[signer] = map[string]string{}
		}
		for k, v := range byKey {
			have[signer][k] = v
		}
	}
	raw, err := json.Marshal(have)
	if err != nil {
		return nil, fmt.Errorf("storage: signatures: %w", err)
	}
	m["signatures"] = raw
	return json.Marshal(m)
}

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
