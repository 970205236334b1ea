package homeserver

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/matrix-org/gomatrix"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestFederationRateLimit has a peer go over the per-address request
// rate: unsigned and signed requests alike get 429 M_LIMIT_EXCEEDED with
// retry_after_ms, counted before any signature is checked.
func TestFederationRateLimit(t *testing.T) {
	b := storagetest.Backends(t)[0]
	a := startFedNode(t, b, func(c *Config) {
		c.RateLimit = RateLimitConfig{FederationPerSecond: 0.001, FederationBurst: 3}
	})
	peer := startFedNode(t, b)
	// Federation listeners have self-signed certificates in tests.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for i := 0; i < 3; i++ {
		resp, err := client.Get("https://" + a.name + "/_matrix/federation/v1/version")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d within the burst: status %d", i, resp.StatusCode)
		}
	}
	resp, err := client.Get("https://" + a.name + "/_matrix/key/v2/server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Errcode      string `json:"errcode"`
		RetryAfterMS int64  `json:"retry_after_ms"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTooManyRequests || body.Errcode != "M_LIMIT_EXCEEDED" || body.RetryAfterMS <= 0 {
		t.Fatalf("over the rate: status %d, %+v; want 429 M_LIMIT_EXCEEDED with retry_after_ms", resp.StatusCode, body)
	}
	// A signed request from the same address is held back as well.
	fr := fclient.NewFederationRequest(http.MethodGet, spec.ServerName(peer.name), spec.ServerName(a.name), "/_matrix/federation/v1/query/profile?user_id=%40nobody%3A"+a.name)
	var out map[string]any
	err = doSigned(peer, fr, &out)
	var herr gomatrix.HTTPError
	if !errors.As(err, &herr) || herr.Code != http.StatusTooManyRequests {
		t.Fatalf("signed request over the rate: %v, want 429", err)
	}
}
