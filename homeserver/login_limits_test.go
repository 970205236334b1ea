package homeserver

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

func loginBody(user, password string) map[string]any {
	return map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": user}, "password": password}
}

// TestLoginLimitsPerAccountAndAddress (issue 20 item 3): failures count per
// account and per address separately, a right password spends nothing, one
// person's wrong passwords lock others at the same address out for no
// longer than one refill, and registration has a bucket of its own.
func TestLoginLimitsPerAccountAndAddress(t *testing.T) {
	clock := newTestClock()
	ts := newTestServer(t, storagetest.Backends(t)[0], func(c *Config) {
		c.Now = clock.Now
		c.RateLimit = RateLimitConfig{
			LoginPerSecond: 0.1, LoginBurst: 5, // per address: 5 failures, then one per 10 s
			LoginAccountPerSecond: 0.01, LoginAccountBurst: 3, // per account: 3, then one per 100 s
			RegisterPerSecond: 0.001, RegisterBurst: 20,
		}
	})
	for _, u := range []string{"alice", "bob", "carol"} {
		ts.user(t, u)
	}
	login := func(user, password string) rawResp {
		return ts.do(t, "POST", "/_matrix/client/v3/login", "", loginBody(user, password))
	}
	// Many right passwords in a row spend nothing.
	for i := 0; i < 8; i++ {
		wantStatus(t, login("bob", "password"), 200, "")
	}
	// Three wrong passwords for alice use up her account's failures.
	for i := 0; i < 3; i++ {
		wantStatus(t, login("alice", "wrong"), 403, "M_FORBIDDEN")
	}
	r := login("alice", "password")
	wantStatus(t, r, 429, "M_LIMIT_EXCEEDED")
	if ms, _ := r.Body["retry_after_ms"].(float64); ms <= 0 || ms > 100_000+1 {
		t.Fatalf("retry_after_ms = %v", r.Body["retry_after_ms"])
	}
	// Bob, at the same address, is not affected by alice's account limit.
	wantStatus(t, login("bob", "password"), 200, "")
	// Two more failures (carol) use up the address: then everyone there
	// waits, but only one refill (10 s here).
	wantStatus(t, login("carol", "wrong"), 403, "M_FORBIDDEN")
	wantStatus(t, login("nobody", "wrong"), 403, "M_FORBIDDEN")
	wantStatus(t, login("carol", "wrong"), 429, "M_LIMIT_EXCEEDED")
	r = login("bob", "password")
	wantStatus(t, r, 429, "M_LIMIT_EXCEEDED")
	if ms, _ := r.Body["retry_after_ms"].(float64); ms <= 0 || ms > 10_001 {
		t.Fatalf("retry_after_ms = %v, want at most one refill", r.Body["retry_after_ms"])
	}
	// Registration does not share the login buckets.
	wantStatus(t, ts.do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{
		"username": "dave", "password": "password", "auth": map[string]any{"type": "m.login.dummy"}}), 200, "")
	clock.Advance(10 * time.Second)
	wantStatus(t, login("bob", "password"), 200, "")
	// ... and bob's success did not spend the token: carol's next wrong
	// password is still answered (403, not 429).
	wantStatus(t, login("carol", "wrong"), 403, "M_FORBIDDEN")
	// Alice's account frees up after its own refill.
	clock.Advance(100 * time.Second)
	wantStatus(t, login("alice", "password"), 200, "")
}

// TestAdminNonceLimitedAndBounded (issue 20 item 4): the unauthenticated
// nonce endpoint is rate-limited per address, and the stored nonces are
// bounded, the oldest dropped.
func TestAdminNonceLimitedAndBounded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b, func(c *Config) {
			c.RegistrationSharedSecret = "s3cret"
			c.RateLimit = RateLimitConfig{}
		})
		limited := false
		for i := 0; i < 30 && !limited; i++ {
			r := ts.do(t, "GET", "/_synapse/admin/v1/register", "", nil)
			switch r.Status {
			case 200:
			case 429:
				limited = r.errcode() == "M_LIMIT_EXCEEDED"
			default:
				t.Fatalf("nonce: %d %s", r.Status, r.Raw)
			}
		}
		if !limited {
			t.Fatal("30 nonce requests from one address, none limited")
		}
		n, err := ts.db.RegistrationNonceCount(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n > 10 {
			t.Fatalf("%d nonces stored after the limit", n)
		}
		// The bound: keep 5, oldest dropped, newest still usable.
		ctx := context.Background()
		for i := 0; i < 20; i++ {
			if err := ts.db.CreateRegistrationNonce(ctx, fmt.Sprint("b", i), int64(2_000_000_000_000+i), 0, 5); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := ts.db.RegistrationNonceCount(ctx); err != nil || n != 5 {
			t.Fatalf("stored %d nonces (%v), want 5", n, err)
		}
		if err := ts.db.ConsumeRegistrationNonce(ctx, "b19", 0); err != nil {
			t.Fatalf("newest nonce gone: %v", err)
		}
		if err := ts.db.ConsumeRegistrationNonce(ctx, "b0", 0); err == nil {
			t.Fatal("oldest nonce kept past the bound")
		}
	})
}

// TestLoginLimitAddressNotSpoofable: X-Forwarded-For is believed from a
// proxy on loopback or a private network, not from a public peer, so a
// client on the Internet cannot dodge the per-address limit by sending a
// new header each time.
func TestLoginLimitAddressNotSpoofable(t *testing.T) {
	ts := newTestServer(t, storagetest.Backends(t)[0], func(c *Config) {
		c.RateLimit = RateLimitConfig{LoginPerSecond: 0.001, LoginBurst: 2, LoginAccountPerSecond: 1000, LoginAccountBurst: 1000}
	})
	ts.user(t, "alice")
	login := func(remote, xff string) int {
		body := `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"wrong"}`
		req := httptest.NewRequest(http.MethodPost, "/_matrix/client/v3/login", strings.NewReader(body))
		req.RemoteAddr = remote
		req.Header.Set("X-Forwarded-For", xff)
		rec := httptest.NewRecorder()
		ts.ClientHandler().ServeHTTP(rec, req)
		return rec.Code
	}
	// A public peer: its header is ignored, its own address is limited.
	for i, want := range []int{403, 403, 429} {
		if got := login("203.0.113.9:4000", fmt.Sprintf("198.51.100.%d", i)); got != want {
			t.Fatalf("public peer, attempt %d: %d, want %d", i, got, want)
		}
	}
	// A proxy on loopback: each forwarded client has its own bucket.
	for i := 0; i < 3; i++ {
		if got := login("127.0.0.1:5000", fmt.Sprintf("198.51.100.%d", 10+i)); got != 403 {
			t.Fatalf("client %d behind a proxy: %d, want 403", i, got)
		}
	}
}
