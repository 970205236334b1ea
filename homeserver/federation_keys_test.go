package homeserver

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/federation"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

func TestFederationServerKeys(t *testing.T) {
	b := storagetest.Backends(t)[0]
	a := startFedNode(t, b)
	ctx := testCtx(t)
	keys, err := a.srv.fed.Client().GetServerKeys(ctx, spec.ServerName(a.name))
	if err != nil {
		t.Fatalf("GET /_matrix/key/v2/server: %v", err)
	}
	checks, ed := gomatrixserverlib.CheckKeys(spec.ServerName(a.name), time.Now(), keys)
	if !checks.AllChecksOK {
		t.Fatalf("key document fails checks: %+v", checks)
	}
	if got := ed["ed25519:fed"]; !ed25519.PublicKey(got).Equal(a.key.Public()) {
		t.Fatalf("published key %x is not the signing key", got)
	}
	if keys.ValidUntilTS.Time().Before(time.Now().Add(time.Hour)) {
		t.Fatalf("valid_until_ts %v is too soon", keys.ValidUntilTS.Time())
	}
	var v fclient.Version
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "matrix://"+a.name+"/_matrix/federation/v1/version", nil)
	if err := a.srv.fed.Client().DoRequestAndParseResponse(ctx, req, &v); err != nil || v.Server.Name != "Switchboard" {
		t.Fatalf("version: %+v %v", v, err)
	}
}

func TestFederationNotary(t *testing.T) {
	b := storagetest.Backends(t)[0]
	a, bb := startFedNode(t, b), startFedNode(t, b)
	ctx := testCtx(t)
	// B vouches for A's keys (fetching them) and for its own.
	res, err := a.srv.fed.Client().LookupServerKeys(ctx, spec.ServerName(bb.name), map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp{
		{ServerName: spec.ServerName(a.name)}:  spec.AsTimestamp(time.Now()),
		{ServerName: spec.ServerName(bb.name)}: spec.AsTimestamp(time.Now()),
	})
	if err != nil {
		t.Fatalf("notary query: %v", err)
	}
	seen := map[spec.ServerName]bool{}
	for _, k := range res {
		checks, _ := gomatrixserverlib.CheckKeys(k.ServerName, time.Now(), k)
		if !checks.AllChecksOK {
			t.Fatalf("notary answer for %s fails checks", k.ServerName)
		}
		if err := gomatrixserverlib.VerifyJSON(bb.name, "ed25519:fed", bb.key.Public().(ed25519.PublicKey), k.Raw); err != nil {
			t.Fatalf("answer for %s not signed by the notary: %v", k.ServerName, err)
		}
		seen[k.ServerName] = true
	}
	if !seen[spec.ServerName(a.name)] || !seen[spec.ServerName(bb.name)] {
		t.Fatalf("notary answered for %v", seen)
	}
}

// signedGet sends a GET signed as origin with key (keyID) for destination
// to the node at target, through from's guarded transport.
func signedGet(t *testing.T, from *fedNode, target, origin, destination string, keyID string, key ed25519.PrivateKey, uri string) int {
	t.Helper()
	fr := fclient.NewFederationRequest(http.MethodGet, spec.ServerName(origin), spec.ServerName(destination), uri)
	if err := fr.Sign(spec.ServerName(origin), gomatrixserverlib.KeyID(keyID), key); err != nil {
		t.Fatal(err)
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Host = target
	resp, err := (&http.Client{Transport: from.srv.fed.Transport(), Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusUnauthorized && !strings.Contains(string(body), "M_UNAUTHORIZED") {
		t.Fatalf("401 without M_UNAUTHORIZED: %s", body)
	}
	return resp.StatusCode
}

func TestFederationRequestAuth(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb := startFedNode(t, b), startFedNode(t, b)
		bob := bb.user(t, "bob")
		ctx := testCtx(t)
		if err := bob.SetDisplayName(ctx, "Bob B"); err != nil {
			t.Fatal(err)
		}
		// A's own client signs correctly: B fetches A's key and answers.
		p, err := a.srv.fed.Client().LookupProfile(ctx, spec.ServerName(a.name), spec.ServerName(bb.name), string(bob.UserID), "")
		if err != nil || p.DisplayName != "Bob B" {
			t.Fatalf("profile over federation: %+v %v", p, err)
		}
		uri := "/_matrix/federation/v1/query/profile?user_id=" + strings.ReplaceAll(string(bob.UserID), ":", "%3A")
		_, wrongKey, _ := ed25519.GenerateKey(rand.Reader)
		for _, tc := range []struct {
			name                string
			origin, destination string
			key                 ed25519.PrivateKey
			want                int
		}{
			{"good", a.name, bb.name, a.key, http.StatusOK},
			{"wrong key", a.name, bb.name, wrongKey, http.StatusUnauthorized},
			{"other destination", a.name, "other.example", a.key, http.StatusUnauthorized},
			{"origin not matching the key", bb.name, bb.name, a.key, http.StatusUnauthorized},
			{"unreachable origin", "127.0.0.1:1", bb.name, a.key, http.StatusUnauthorized},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if got := signedGet(t, a, bb.name, tc.origin, tc.destination, "ed25519:fed", tc.key, uri); got != tc.want {
					t.Fatalf("status %d, want %d", got, tc.want)
				}
			})
		}
		// No Authorization header at all.
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "matrix://"+bb.name+uri, nil)
		resp, err := (&http.Client{Transport: a.srv.fed.Transport()}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("unsigned request: %d", resp.StatusCode)
		}
	})
}

func TestFederationRefusesInternalAddresses(t *testing.T) {
	b := storagetest.Backends(t)[0]
	open := startFedNode(t, b)
	strict := startFedNode(t, b, func(c *Config) { c.Federation.AllowNetworks = nil })
	ctx := testCtx(t)
	// An IP literal on loopback, and a hostname that resolves to loopback
	// (the check runs after DNS).
	_, port, _ := strings.Cut(open.name, ":")
	for _, name := range []string{open.name, "localhost:" + port} {
		_, err := strict.srv.fed.Client().GetServerKeys(ctx, spec.ServerName(name))
		if !errors.Is(err, federation.ErrForbiddenAddress) {
			t.Fatalf("%s: want federation.ErrForbiddenAddress, got %v", name, err)
		}
	}
	// A redirect from an allowed address to one that is not.
	tr := open.srv.fed.Transport()
	srv := newRedirectServer(t, "https://127.0.0.2:"+port+"/_matrix/key/v2/server")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "matrix://"+srv+"/_matrix/key/v2/server", nil)
	_, err := (&http.Client{Transport: tr}).Do(req)
	if !errors.Is(err, federation.ErrForbiddenAddress) {
		t.Fatalf("redirect to 127.0.0.2: want federation.ErrForbiddenAddress, got %v", err)
	}
	// With the allow-list the same node reaches loopback.
	if _, err := open.srv.fed.Client().GetServerKeys(ctx, spec.ServerName(strict.name)); err != nil {
		t.Fatalf("allowed loopback: %v", err)
	}
}

func TestFederationKeyCacheServesNotary(t *testing.T) {
	b := storagetest.Backends(t)[0]
	a, bb := startFedNode(t, b), startFedNode(t, b)
	ctx := testCtx(t)
	// A verifies something signed by B: B's key enters A's cache.
	msg, err := gomatrixserverlib.SignJSON(bb.name, "ed25519:fed", bb.key, []byte(`{"hello":"world"}`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.srv.fed.KeyRing().VerifyJSONs(ctx, []gomatrixserverlib.VerifyJSONRequest{{ServerName: spec.ServerName(bb.name), AtTS: spec.AsTimestamp(time.Now()), Message: msg, ValidityCheckingFunc: gomatrixserverlib.StrictValiditySignatureCheck}})
	if err != nil || res[0].Error != nil {
		t.Fatalf("verify: %v %v", err, res)
	}
	// B goes away; A still vouches for B's key from its cache.
	bb.stop()
	var out struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "matrix://"+a.name+"/_matrix/key/v2/query/"+bb.name, nil)
	resp, err := (&http.Client{Transport: a.srv.fed.Transport()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.ServerKeys) != 1 {
		t.Fatalf("cached notary answer: %v %d", err, len(out.ServerKeys))
	}
	if err := gomatrixserverlib.VerifyJSON(bb.name, "ed25519:fed", bb.key.Public().(ed25519.PublicKey), out.ServerKeys[0]); err != nil {
		t.Fatalf("cached document lost B's signature: %v", err)
	}
}

// newRedirectServer starts a TLS server on 127.0.0.1 that redirects every
// request to target and returns its host:port.
func newRedirectServer(t *testing.T, target string) string {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target, http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}
