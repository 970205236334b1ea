package homeserver

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// keyFetchTimeout bounds one remote key fetch.
const keyFetchTimeout = 15 * time.Second

// serverKeysJSON builds and signs this server's key document (spec:
// Server-Server API, "Publishing Keys": GET /_matrix/key/v2/server).
func (f *federation) serverKeysJSON() ([]byte, error) {
	doc := map[string]any{
		"server_name":     f.s.cfg.ServerName,
		"verify_keys":     map[string]any{f.s.cfg.KeyID: map[string]any{"key": spec.Base64Bytes(f.publicKey())}},
		"old_verify_keys": map[string]any{},
		"valid_until_ts":  f.s.cfg.Now().Add(f.s.cfg.Federation.KeyValidity).UnixMilli(),
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return gomatrixserverlib.SignJSON(f.s.cfg.ServerName, gomatrixserverlib.KeyID(f.s.cfg.KeyID), f.s.cfg.SigningKey, raw)
}

func (f *federation) publicKey() []byte {
	return []byte(f.s.cfg.SigningKey[32:])
}

// getServerKeys serves GET /_matrix/key/v2/server.
func (f *federation) getServerKeys(c echo.Context) error {
	b, err := f.serverKeysJSON()
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b)
}

// keyStore caches remote servers' keys in memory: the lookup results the
// key ring checks signatures with, and each server's last raw (signed) key
// document, which the notary endpoint serves again.
type keyStore struct {
	mu      sync.Mutex // guards results and raw
	results map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult
	raw     map[spec.ServerName]json.RawMessage
}

func newKeyStore() *keyStore {
	return &keyStore{
		results: make(map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult),
		raw:     make(map[spec.ServerName]json.RawMessage),
	}
}

// FetcherName implements gomatrixserverlib.KeyFetcher.
func (k *keyStore) FetcherName() string { return "switchboard key cache" }

// FetchKeys implements gomatrixserverlib.KeyFetcher from the cache.
func (k *keyStore) FetchKeys(_ context.Context, reqs map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult)
	for r := range reqs {
		if res, ok := k.results[r]; ok {
			out[r] = res
		}
	}
	return out, nil
}

// StoreKeys implements gomatrixserverlib.KeyDatabase.
func (k *keyStore) StoreKeys(_ context.Context, res map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for r, v := range res {
		k.results[r] = v
	}
	return nil
}

func (k *keyStore) storeRaw(server spec.ServerName, raw []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.raw[server] = append(json.RawMessage(nil), raw...)
}

func (k *keyStore) rawFor(server spec.ServerName) json.RawMessage {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.raw[server]
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
	f      *federation
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
		if string(server) == d.f.s.cfg.ServerName {
			out[gomatrixserverlib.PublicKeyLookupRequest{ServerName: server, KeyID: gomatrixserverlib.KeyID(d.f.s.cfg.KeyID)}] = gomatrixserverlib.PublicKeyLookupResult{
				VerifyKey:    gomatrixserverlib.VerifyKey{Key: d.f.publicKey()},
				ExpiredTS:    gomatrixserverlib.PublicKeyNotExpired,
				ValidUntilTS: spec.AsTimestamp(d.f.s.cfg.Now().Add(d.f.s.cfg.Federation.KeyValidity)),
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
	checks, _ := gomatrixserverlib.CheckKeys(server, d.f.s.cfg.Now(), keys)
	if !checks.AllChecksOK {
		return keys, ErrBadServerKeys
	}
	d.store.storeRaw(server, keys.Raw)
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
// own, and remote ones from the cache (fetched when absent), each
// counter-signed by this server (spec: Server-Server API, "Querying Keys
// Through Another Server").
func (f *federation) notaryKeys(ctx context.Context, servers []spec.ServerName) []json.RawMessage {
	out := []json.RawMessage{}
	for _, server := range servers {
		var raw []byte
		if string(server) == f.s.cfg.ServerName {
			b, err := f.serverKeysJSON()
			if err != nil {
				continue
			}
			out = append(out, b)
			continue
		}
		raw = f.keys.rawFor(server)
		if raw == nil {
			if _, err := f.fetcher.fetch(ctx, server); err != nil {
				continue
			}
			raw = f.keys.rawFor(server)
		}
		signed, err := gomatrixserverlib.SignJSON(f.s.cfg.ServerName, gomatrixserverlib.KeyID(f.s.cfg.KeyID), f.s.cfg.SigningKey, raw)
		if err != nil {
			continue
		}
		out = append(out, signed)
	}
	return out
}

// queryKeys serves POST /_matrix/key/v2/query.
func (f *federation) queryKeys(c echo.Context) error {
	var req struct {
		ServerKeys map[spec.ServerName]map[string]json.RawMessage `json:"server_keys"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if len(req.ServerKeys) > 100 {
		return errTooLarge("at most 100 servers per query")
	}
	servers := make([]spec.ServerName, 0, len(req.ServerKeys))
	for s := range req.ServerKeys {
		servers = append(servers, s)
	}
	return c.JSON(http.StatusOK, map[string]any{"server_keys": f.notaryKeys(c.Request().Context(), servers)})
}

// queryServerKeys serves GET /_matrix/key/v2/query/{serverName}.
func (f *federation) queryServerKeys(c echo.Context) error {
	server := spec.ServerName(param(c, "serverName"))
	return c.JSON(http.StatusOK, map[string]any{"server_keys": f.notaryKeys(c.Request().Context(), []spec.ServerName{server})})
}
