package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// keyFetchTimeout bounds one remote key fetch.
const keyFetchTimeout = 15 * time.Second

// serverKeysJSON builds and signs this server's key document (spec:
// Server-Server API, "Publishing Keys": GET /_matrix/key/v2/server).
func (f *Service) serverKeysJSON() ([]byte, error) {
	doc := map[string]any{
		"server_name":     f.serverName,
		"verify_keys":     map[string]any{f.keyID: map[string]any{"key": spec.Base64Bytes(f.publicKey())}},
		"old_verify_keys": map[string]any{},
		"valid_until_ts":  f.clock.Now().Add(f.opts.KeyValidity).UnixMilli(),
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return gomatrixserverlib.SignJSON(f.serverName, gomatrixserverlib.KeyID(f.keyID), f.signingKey, raw)
}

func (f *Service) publicKey() []byte {
	return []byte(f.signingKey[32:])
}

// getServerKeys serves GET /_matrix/key/v2/server.
func (f *Service) getServerKeys(c echo.Context) error {
	b, err := f.serverKeysJSON()
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b)
}

// keyPersistence is what the key cache needs of the database.
type keyPersistence interface {
	StoreServerKeys(ctx context.Context, keys []storage.ServerKey) error
	ServerKey(ctx context.Context, server, keyID string) (storage.ServerKey, error)
	StoreServerKeyResponse(ctx context.Context, r storage.ServerKeyResponse) error
	ServerKeyResponseFor(ctx context.Context, server string) (storage.ServerKeyResponse, error)
}

// keyStore caches remote servers' keys: the lookup results the key ring
// checks signatures with, and each server's last raw (signed) key
// document, which the notary endpoint serves again. Memory is the fast
// path; every store is written through to the database and a miss reads
// through to it, so keys learnt before a restart still verify events of a
// server that is down since (spec: Server-Server API, "Retrieving server
// keys"). StoreKeys and storeRaw write through db.WriteTx: the key ring
// must not be used from inside a write.
type keyStore struct {
	db   keyPersistence
	self spec.ServerName // our own key is answered by the fetcher, never persisted
	now  func() time.Time
	log  *slog.Logger

	mu      sync.Mutex // guards results and raw
	results map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult
	raw     map[spec.ServerName]rawKeys
}

// rawKeys is a server's last self-signed key document and its validity.
type rawKeys struct {
	json       json.RawMessage
	validUntil spec.Timestamp
}

func newKeyStore(db keyPersistence, self spec.ServerName, now func() time.Time, log *slog.Logger) *keyStore {
	return &keyStore{
		db: db, self: self, now: now, log: log,
		results: make(map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult),
		raw:     make(map[spec.ServerName]rawKeys),
	}
}

// FetcherName implements gomatrixserverlib.KeyFetcher.
func (k *keyStore) FetcherName() string { return "switchboard key cache" }

// FetchKeys implements gomatrixserverlib.KeyFetcher from the cache. A key
// missing from memory, or a current key whose valid_until_ts has passed
// (another process sharing the database may have refetched it), is read
// from the database. The key ring decides what is still valid at the
// time it needs and asks the fetchers for the rest.
func (k *keyStore) FetchKeys(ctx context.Context, reqs map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	now := spec.AsTimestamp(k.now())
	out := make(map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult)
	var look []gomatrixserverlib.PublicKeyLookupRequest
	k.mu.Lock()
	for r := range reqs {
		res, ok := k.results[r]
		if ok {
			out[r] = res
		}
		if !ok || (res.ExpiredTS == gomatrixserverlib.PublicKeyNotExpired && res.ValidUntilTS <= now) {
			look = append(look, r)
		}
	}
	k.mu.Unlock()
	for _, r := range look {
		row, err := k.db.ServerKey(ctx, string(r.ServerName), string(r.KeyID))
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			// A cache: the fetchers can still answer.
			k.log.Warn("reading a stored server key failed", "server", r.ServerName, "key_id", r.KeyID, "err", err)
			continue
		}
		res := resultOf(row)
		k.mu.Lock()
		if cur, ok := k.results[r]; !ok || newerKey(res, cur) {
			k.results[r] = res
		}
		out[r] = k.results[r]
		k.mu.Unlock()
	}
	return out, nil
}

// newerKey reports whether a says more than b: it expired (an old key
// stays old), or it is valid for longer.
func newerKey(a, b gomatrixserverlib.PublicKeyLookupResult) bool {
	if b.ExpiredTS != gomatrixserverlib.PublicKeyNotExpired {
		return false
	}
	return a.ExpiredTS != gomatrixserverlib.PublicKeyNotExpired || a.ValidUntilTS > b.ValidUntilTS
}

func resultOf(row storage.ServerKey) gomatrixserverlib.PublicKeyLookupResult {
	return gomatrixserverlib.PublicKeyLookupResult{
		VerifyKey:    gomatrixserverlib.VerifyKey{Key: spec.Base64Bytes(row.PublicKey)},
		ExpiredTS:    spec.Timestamp(row.ExpiredTS),
		ValidUntilTS: spec.Timestamp(row.ValidUntilTS),
	}
}

// StoreKeys implements gomatrixserverlib.KeyDatabase. The key ring hands
// back what it read from us along with what it fetched: only results that
// differ from memory are written to the database. A failed write is
// logged, not returned: the keys stay usable from memory.
func (k *keyStore) StoreKeys(ctx context.Context, res map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult) error {
	nowMS := k.now().UnixMilli()
	var rows []storage.ServerKey
	k.mu.Lock()
	for r, v := range res {
		if cur, ok := k.results[r]; ok && sameKey(cur, v) {
			continue
		}
		k.results[r] = v
		if r.ServerName == k.self {
			continue
		}
		rows = append(rows, storage.ServerKey{
			ServerName: string(r.ServerName), KeyID: string(r.KeyID), PublicKey: []byte(v.Key),
			ValidUntilTS: int64(v.ValidUntilTS), ExpiredTS: int64(v.ExpiredTS), FetchedTS: nowMS,
		})
	}
	k.mu.Unlock()
	if err := k.db.StoreServerKeys(ctx, rows); err != nil {
		k.log.Warn("storing server keys failed", "keys", len(rows), "err", err)
	}
	return nil
}

func sameKey(a, b gomatrixserverlib.PublicKeyLookupResult) bool {
	return a.ExpiredTS == b.ExpiredTS && a.ValidUntilTS == b.ValidUntilTS && bytes.Equal(a.Key, b.Key)
}

// storeRaw keeps server's checked key document, in memory and in the
// database.
func (k *keyStore) storeRaw(ctx context.Context, server spec.ServerName, raw []byte, validUntil spec.Timestamp) {
	k.mu.Lock()
	k.raw[server] = rawKeys{json: append(json.RawMessage(nil), raw...), validUntil: validUntil}
	k.mu.Unlock()
	err := k.db.StoreServerKeyResponse(ctx, storage.ServerKeyResponse{
		ServerName: string(server), JSON: raw, ValidUntilTS: int64(validUntil), FetchedTS: k.now().UnixMilli(),
	})
	if err != nil {
		k.log.Warn("storing a server key document failed", "server", server, "err", err)
	}
}

// rawFor returns server's last key document, from memory or else the
// database; ok is false when there is none.
func (k *keyStore) rawFor(ctx context.Context, server spec.ServerName) (rawKeys, bool) {
	k.mu.Lock()
	r, ok := k.raw[server]
	k.mu.Unlock()
	if ok {
		return r, true
	}
	row, err := k.db.ServerKeyResponseFor(ctx, string(server))
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			k.log.Warn("reading a stored server key document failed", "server", server, "err", err)
		}
		return rawKeys{}, false
	}
	r = rawKeys{json: row.JSON, validUntil: spec.Timestamp(row.ValidUntilTS)}
	k.mu.Lock()
	if cur, ok := k.raw[server]; ok {
		r = cur // a fetch finished meanwhile
	} else {
		k.raw[server] = r
	}
	k.mu.Unlock()
	return r, true
}

// keyClient is what the fetcher needs of the federation client.
type keyClient interface {
	GetServerKeys(ctx context.Context, server spec.ServerName) (gomatrixserverlib.ServerKeys, error)
}

// directKeyFetcher fetches keys from the servers themselves over our
// federation client (so through the guarded dialer), checks the document's
// self-signature and validity, and records the raw document for the
// notary. Our own key is answered locally.
type directKeyFetcher struct {
	f      *Service
	client keyClient
	store  *keyStore
}

func (d *directKeyFetcher) FetcherName() string { return "switchboard direct" }

func (d *directKeyFetcher) FetchKeys(ctx context.Context, reqs map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	out := make(map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult)
	servers := map[spec.ServerName]bool{}
	for r := range reqs {
		servers[r.ServerName] = true
	}
	for server := range servers {
		if string(server) == d.f.serverName {
			out[gomatrixserverlib.PublicKeyLookupRequest{ServerName: server, KeyID: gomatrixserverlib.KeyID(d.f.keyID)}] = gomatrixserverlib.PublicKeyLookupResult{
				VerifyKey:    gomatrixserverlib.VerifyKey{Key: d.f.publicKey()},
				ExpiredTS:    gomatrixserverlib.PublicKeyNotExpired,
				ValidUntilTS: spec.AsTimestamp(d.f.clock.Now().Add(d.f.opts.KeyValidity)),
			}
			continue
		}
		keys, err := d.fetch(ctx, server)
		if err != nil {
			d.f.log.Info("fetching server keys failed", "server", server, "err", err)
			continue
		}
		for id, r := range lookupResults(keys) {
			out[gomatrixserverlib.PublicKeyLookupRequest{ServerName: server, KeyID: id}] = r
		}
	}
	return out, nil
}

func (d *directKeyFetcher) fetch(ctx context.Context, server spec.ServerName) (gomatrixserverlib.ServerKeys, error) {
	ctx, cancel := context.WithTimeout(ctx, keyFetchTimeout)
	defer cancel()
	keys, err := d.client.GetServerKeys(ctx, server)
	if err != nil {
		return keys, err
	}
	checks, _ := gomatrixserverlib.CheckKeys(server, d.f.clock.Now(), keys)
	if !checks.AllChecksOK {
		return keys, ErrBadServerKeys
	}
	d.store.storeRaw(ctx, server, keys.Raw, keys.ValidUntilTS)
	return keys, nil
}

// lookupResults maps a checked key document to key ring results.
func lookupResults(keys gomatrixserverlib.ServerKeys) map[gomatrixserverlib.KeyID]gomatrixserverlib.PublicKeyLookupResult {
	out := make(map[gomatrixserverlib.KeyID]gomatrixserverlib.PublicKeyLookupResult)
	for id, vk := range keys.VerifyKeys {
		out[id] = gomatrixserverlib.PublicKeyLookupResult{VerifyKey: vk, ExpiredTS: gomatrixserverlib.PublicKeyNotExpired, ValidUntilTS: keys.ValidUntilTS}
	}
	for id, ok := range keys.OldVerifyKeys {
		out[id] = gomatrixserverlib.PublicKeyLookupResult{VerifyKey: ok.VerifyKey, ExpiredTS: ok.ExpiredTS, ValidUntilTS: gomatrixserverlib.PublicKeyNotValid}
	}
	return out
}

// notaryKeys returns the key documents this server can vouch for: its
// own, and remote ones, each counter-signed by this server (spec:
// Server-Server API, "Querying Keys Through Another Server"). want maps
// each server to the minimum_valid_until_ts the requester needs. A cached
// document valid until then is served as it is; otherwise the server is
// asked again, and when it cannot be reached the cached document (from
// memory or the database, however old) is served: the spec leaves a
// server out only when it "could not be reached and no cached keys were
// available".
func (f *Service) notaryKeys(ctx context.Context, want map[spec.ServerName]spec.Timestamp) []json.RawMessage {
	out := []json.RawMessage{}
	for server, minValid := range want {
		if string(server) == f.serverName {
			b, err := f.serverKeysJSON()
			if err != nil {
				continue
			}
			out = append(out, b)
			continue
		}
		cached, ok := f.keys.rawFor(ctx, server)
		raw := cached.json
		if !ok || cached.validUntil < minValid {
			if keys, err := f.fetcher.fetch(ctx, server); err == nil {
				raw = keys.Raw
			} else if !ok {
				continue
			}
		}
		signed, err := gomatrixserverlib.SignJSON(f.serverName, gomatrixserverlib.KeyID(f.keyID), f.signingKey, raw)
		if err != nil {
			continue
		}
		out = append(out, signed)
	}
	return out
}

// keyQueryCriteria is one key ID's query criteria in POST
// /_matrix/key/v2/query.
type keyQueryCriteria struct {
	MinimumValidUntilTS *int64 `json:"minimum_valid_until_ts"`
}

// queryKeys serves POST /_matrix/key/v2/query.
func (f *Service) queryKeys(c echo.Context) error {
	var req struct {
		ServerKeys map[spec.ServerName]map[string]keyQueryCriteria `json:"server_keys"`
	}
	if err := f.readJSON(c, &req); err != nil {
		return err
	}
	if len(req.ServerKeys) > 100 {
		return errTooLarge("at most 100 servers per query")
	}
	now := spec.AsTimestamp(f.clock.Now())
	want := make(map[spec.ServerName]spec.Timestamp, len(req.ServerKeys))
	for s, ids := range req.ServerKeys {
		// Absent criteria mean "valid now"; of several, the latest counts.
		min := now
		for _, crit := range ids {
			if crit.MinimumValidUntilTS != nil && *crit.MinimumValidUntilTS > int64(min) {
				min = spec.Timestamp(*crit.MinimumValidUntilTS)
			}
		}
		want[s] = min
	}
	return c.JSON(http.StatusOK, map[string]any{"server_keys": f.notaryKeys(c.Request().Context(), want)})
}

// queryServerKeys serves GET /_matrix/key/v2/query/{serverName}.
func (f *Service) queryServerKeys(c echo.Context) error {
	server := spec.ServerName(param(c, "serverName"))
	min := spec.AsTimestamp(f.clock.Now())
	if v := c.QueryParam("minimum_valid_until_ts"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return errInvalidParam("minimum_valid_until_ts must be a non-negative integer")
		}
		min = spec.Timestamp(n)
	}
	return c.JSON(http.StatusOK, map[string]any{"server_keys": f.notaryKeys(c.Request().Context(), map[spec.ServerName]spec.Timestamp{server: min})})
}
