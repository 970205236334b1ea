package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

func TestParseRESTUsername(t *testing.T) {
	tests := []struct {
		in     string
		expiry int64
		user   string
		ok     bool
	}{
		{"1700000000:@alice:example.org", 1700000000, "@alice:example.org", true},
		{"1:x", 1, "x", true},
		{"0001:x", 1, "x", true},
		{"123456789012345678:x", 123456789012345678, "x", true},
		{"1234567890123456789:x", 0, "", false}, // 19 digits: could overflow
		{"1700000000:", 0, "", false},
		{"1700000000", 0, "", false},
		{":alice", 0, "", false},
		{"alice:1700000000", 0, "", false},
		{"-1700000000:alice", 0, "", false},
		{"+1700000000:alice", 0, "", false},
		{" 1700000000:alice", 0, "", false},
		{"17x00:alice", 0, "", false},
		{"", 0, "", false},
		{"1:" + strings.Repeat("a", maxUsernameLen), 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			exp, user, err := parseRESTUsername(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && (exp != tt.expiry || user != tt.user) {
				t.Fatalf("got (%d, %q), want (%d, %q)", exp, user, tt.expiry, tt.user)
			}
		})
	}
}

func TestRESTCredentials(t *testing.T) {
	now := time.Unix(1700000000, 0)
	user, pass := RESTCredentials("secret", "@alice:example.org", time.Hour, now)
	if user != "1700003600:@alice:example.org" {
		t.Fatalf("username = %q", user)
	}
	mac := hmac.New(sha1.New, []byte("secret"))
	mac.Write([]byte(user))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); pass != want {
		t.Fatalf("password = %q, want %q", pass, want)
	}
}

func TestAuthenticatorLookup(t *testing.T) {
	now := time.Unix(1700000000, 0)
	a := &authenticator{
		realm: "r", secret: "s", maxTTL: time.Hour,
		static: map[string]string{"operator": "pw"},
		now:    func() time.Time { return now },
	}
	rest := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) + ":@u:x" }
	tests := []struct {
		name, username, realm string
		wantErr               error
		wantUser              string
	}{
		{"rest ok", rest(time.Hour), "r", nil, "@u:x"},
		{"rest within skew", rest(time.Hour + 20*time.Second), "r", nil, "@u:x"},
		{"rest too far ahead", rest(2 * time.Hour), "r", ErrCredentialTooLong, ""},
		{"rest a day ahead (coturn uclient)", rest(24 * time.Hour), "r", ErrCredentialTooLong, ""},
		{"rest expired", rest(-time.Second), "r", ErrCredentialExpired, ""},
		{"rest expiring now", rest(0), "r", nil, "@u:x"},
		{"wrong realm", rest(time.Hour), "other", ErrWrongRealm, ""},
		{"malformed", "alice", "r", ErrBadUsername, ""},
		{"static", "operator", "r", nil, "operator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, key, _, err := a.lookup(tt.username, tt.realm)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (user != tt.wantUser || len(key) != 16) {
				t.Fatalf("user %q key %x", user, key)
			}
		})
	}
	a.secret = ""
	if _, _, _, err := a.lookup(rest(time.Hour), "r"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("REST username with REST auth off: err = %v, want ErrUnknownUser", err)
	}
}

// TestCredentialsOverTheWire: every credential mistake gets 401 with a
// fresh REALM and NONCE, over UDP and TCP; a nonce the server never issued
// gets 438; good REST and static credentials allocate.
func TestCredentialsOverTheWire(t *testing.T) {
	checkLeaks(t)
	now := time.Now()
	h := startHarness(t, func(c *Config) {
		c.StaticUsers = map[string]string{"operator": "operator-pw"}
		c.Now = func() time.Time { return now }
	})
	rest := func(d time.Duration, user string) (string, string) {
		return RESTCredentials(testSecret, user, d, now)
	}
	okUser, okPass := rest(59*time.Minute, "@ok:switchboard.test")
	expUser, expPass := rest(-time.Minute, "@old:switchboard.test")
	farUser, farPass := rest(2*time.Hour, "@far:switchboard.test")
	tests := []struct {
		name, user, pass, realm string
		code                    int
		label                   string
	}{
		{"rest ok", okUser, okPass, testRealm, 0, ""},
		{"static ok", "operator", "operator-pw", testRealm, 0, ""},
		{"expired", expUser, expPass, testRealm, 401, authExpired},
		{"beyond max ttl", farUser, farPass, testRealm, 401, authTooLong},
		{"bad hmac", okUser, "not-the-password", testRealm, 401, authBadHMAC},
		{"static bad password", "operator", "wrong", testRealm, 401, authBadHMAC},
		{"wrong realm", okUser, okPass, "evil.example", 401, authWrongRealm},
		{"malformed username", "alice", "pw", testRealm, 401, authMalformed},
	}
	for _, tcp := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(map[bool]string{false: "udp/", true: "tcp/"}[tcp]+tt.name, func(t *testing.T) {
				before := h.metric("switchboard_turn_auth_failures_total", "reason", tt.label)
				c := dialRaw(t, h, tcp, tt.user, tt.pass)
				c.realm = tt.realm
				c.fetchNonce()
				r := c.transact(c.build(stun.MethodAllocate, c.nonce, reqTransport(17)))
				if got := errorCode(r); got != tt.code {
					t.Fatalf("code = %d, want %d", got, tt.code)
				}
				if tt.code == 0 {
					if r := c.request(stun.MethodRefresh, lifetime(0)); r.Type.Class != stun.ClassSuccessResponse {
						t.Fatalf("refresh 0: %d", errorCode(r))
					}
					return
				}
				var realm stun.Realm
				var nonce stun.Nonce
				if realm.GetFrom(r) != nil || realm.String() != testRealm || nonce.GetFrom(r) != nil {
					t.Fatalf("401 without REALM %q and NONCE", testRealm)
				}
				if got := h.metric("switchboard_turn_auth_failures_total", "reason", tt.label); got != before+1 {
					t.Fatalf("auth failures{%s} = %v, want %v", tt.label, got, before+1)
				}
			})
		}
		t.Run(map[bool]string{false: "udp/", true: "tcp/"}[tcp]+"stale nonce", func(t *testing.T) {
			before := h.metric("switchboard_turn_auth_failures_total", "reason", authStaleNonce)
			c := dialRaw(t, h, tcp, okUser, okPass)
			r := c.transact(c.build(stun.MethodAllocate, "obviously-not-a-nonce-we-issued", reqTransport(17)))
			if got := errorCode(r); got != 438 {
				t.Fatalf("code = %d, want 438", got)
			}
			var nonce stun.Nonce
			if nonce.GetFrom(r) != nil {
				t.Fatal("438 without a fresh NONCE")
			}
			if got := h.metric("switchboard_turn_auth_failures_total", "reason", authStaleNonce); got != before+1 {
				t.Fatalf("stale nonce failures = %v, want %v", got, before+1)
			}
			// The fresh nonce works.
			c.nonce = nonce.String()
			if r := c.request(stun.MethodAllocate, reqTransport(17)); r.Type.Class != stun.ClassSuccessResponse {
				t.Fatalf("allocate with fresh nonce: %d", errorCode(r))
			}
			c.request(stun.MethodRefresh, lifetime(0))
		})
	}
	testkit.Eventually(t, 5*time.Second, "deallocations", func() bool { return h.srv.AllocationCount() == 0 })
}

// TestCredentialExpiryStopsRefresh: once a REST credential has expired,
// even the holder of a live allocation cannot refresh it (401).
func TestCredentialExpiryStopsRefresh(t *testing.T) {
	checkLeaks(t)
	now := time.Now()
	var offset atomic.Int64
	h := startHarness(t, func(c *Config) {
		c.Now = func() time.Time { return now.Add(time.Duration(offset.Load())) }
	})
	user, pass := RESTCredentials(testSecret, "@short:switchboard.test", 10*time.Minute, now)
	c := dialRaw(t, h, false, user, pass)
	c.allocate()
	offset.Store(int64(11 * time.Minute))
	if r := c.request(stun.MethodRefresh, lifetime(600*time.Second)); errorCode(r) != 401 {
		t.Fatalf("refresh with expired credential: code %d, want 401", errorCode(r))
	}
	offset.Store(0)
	c.request(stun.MethodRefresh, lifetime(0))
	testkit.Eventually(t, 5*time.Second, "deallocation", func() bool { return h.srv.AllocationCount() == 0 })
}
