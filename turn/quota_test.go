package turn

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestQuotas: the per-user and the total allocation quotas answer 486 and
// are counted; freeing an allocation frees quota.
func TestQuotas(t *testing.T) {
	checkLeaks(t)
	h := startHarness(t, func(c *Config) {
		c.UserQuota = 2
		c.TotalQuota = 3
	})
	aliceU, aliceP := restCreds("@alice:switchboard.test")
	bobU, bobP := restCreds("@bob:switchboard.test")
	alice1 := dialRaw(t, h, false, aliceU, aliceP)
	alice2 := dialRaw(t, h, true, aliceU, aliceP) // same user over TCP counts too
	alice3 := dialRaw(t, h, false, aliceU, aliceP)
	alice1.allocate()
	alice2.allocate()
	if r := alice3.request(stun.MethodAllocate, reqTransport(17)); errorCode(r) != 486 {
		t.Fatalf("third allocation of one user: code %d, want 486", errorCode(r))
	}
	if got := h.metric("switchboard_turn_quota_refusals_total", "quota", "user"); got != 1 {
		t.Fatalf("user quota refusals = %v, want 1", got)
	}
	bob1 := dialRaw(t, h, false, bobU, bobP)
	bob2 := dialRaw(t, h, false, bobU, bobP)
	bob1.allocate()
	if r := bob2.request(stun.MethodAllocate, reqTransport(17)); errorCode(r) != 486 {
		t.Fatalf("allocation beyond the total quota: code %d, want 486", errorCode(r))
	}
	if got := h.metric("switchboard_turn_quota_refusals_total", "quota", "total"); got != 1 {
		t.Fatalf("total quota refusals = %v, want 1", got)
	}
	if got := h.metric("switchboard_turn_allocations"); got != 3 {
		t.Fatalf("allocations gauge = %v, want 3", got)
	}
	alice1.request(stun.MethodRefresh, lifetime(0))
	testkit.Eventually(t, 5*time.Second, "alice's first allocation to go", func() bool { return h.srv.AllocationCount() == 2 })
	alice3.allocate()
}

// TestBindingRateLimit: unauthenticated Binding requests beyond the per-IP
// budget are dropped. The clock is frozen, so the budget is exactly the
// burst; an Allocate sent last marks the end of the queue.
func TestBindingRateLimit(t *testing.T) {
	checkLeaks(t)
	now := time.Now()
	h := startHarness(t, func(c *Config) {
		c.BindingRatePerSec = 3
		c.Now = func() time.Time { return now }
	})
	c := dialRaw(t, h, false, "x", "y")
	var ids [][stun.TransactionIDSize]byte
	for range 10 {
		m := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		ids = append(ids, m.TransactionID)
		c.send(m.Raw)
	}
	marker := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), reqTransport(17))
	c.send(marker.Raw)
	answered := 0
	timeout := time.After(5 * time.Second)
	for done := false; !done; {
		select {
		case r := <-c.responses:
			if r.TransactionID == marker.TransactionID {
				done = true
				continue
			}
			if r.Type == stun.BindingSuccess {
				answered++
			}
		case <-timeout:
			t.Fatal("no answer to the marker request")
		}
	}
	if answered != 3 {
		t.Fatalf("answered %d Binding requests, want 3 (the burst)", answered)
	}
	if got := h.metric("switchboard_turn_binding_rate_limited_total"); got != 7 {
		t.Fatalf("rate-limited counter = %v, want 7", got)
	}
}

// TestBandwidthCap: with the clock frozen, an allocation may relay one
// burst (one second's worth of its cap) and no more; the rest is dropped
// and counted.
func TestBandwidthCap(t *testing.T) {
	checkLeaks(t)
	now := time.Now()
	h := startHarness(t, func(c *Config) {
		c.BandwidthBytesPerSec = 1000
		c.Now = func() time.Time { return now }
	})
	peer := listenUDPPeer(t, "127.0.0.1:0")
	u, p := restCreds("@greedy:switchboard.test")
	c := dialRaw(t, h, false, u, p)
	c.allocate()
	if r := c.request(stun.MethodChannelBind, channelNumber(0x4000), peerAddr(peer.addr())); r.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("ChannelBind: %d", errorCode(r))
	}
	payload := bytes.Repeat([]byte{'x'}, 400)
	for range 5 {
		c.send(channelData(0x4000, payload, false))
	}
	testkit.Eventually(t, 5*time.Second, "3 drops", func() bool { return h.metric("switchboard_turn_bandwidth_dropped_packets_total") == 3 })
	if got := h.metric("switchboard_turn_relayed_packets_total", "transport", "udp", "direction", "to_peer"); got != 2 {
		t.Fatalf("relayed = %v, want 2", got)
	}
	peer.expect(t, payload)
	peer.expect(t, payload)
}

// TestNewValidates: New refuses bad configs before serving anything, and
// starts no goroutine when it does.
func TestNewValidates(t *testing.T) {
	defer goleak.VerifyNone(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	tests := []struct {
		name   string
		mutate func(*Config)
		want   error
	}{
		{"bad allow CIDR", func(c *Config) { c.AllowCIDRs = []string{"10.0.0.0/33"} }, ErrBadCIDR},
		{"bad deny CIDR", func(c *Config) { c.DenyCIDRs = []string{"not-a-cidr"} }, ErrBadCIDR},
		{"zone in CIDR", func(c *Config) { c.AllowCIDRs = []string{"fe80::1%eth0/128"} }, ErrBadCIDR},
		{"no realm", func(c *Config) { c.Realm = "" }, ErrNoRealm},
		{"no relay ip", func(c *Config) { c.RelayIP = nil }, ErrNoRelayIP},
		{"unspecified relay ip", func(c *Config) { c.RelayIP = net.IPv4zero }, ErrNoRelayIP},
		{"bad bind", func(c *Config) { c.RelayBindAddress = "localhost" }, ErrBadRelayBind},
		{"empty port range", func(c *Config) { c.RelayPortMin, c.RelayPortMax = 60000, 50000 }, ErrBadPortRange},
		{"no credentials", func(c *Config) { c.SharedSecret = "" }, ErrNoAuth},
		{"negative quota", func(c *Config) { c.UserQuota = -1 }, ErrBadQuota},
		{"bad own address", func(c *Config) { c.OwnAddrs = append(c.OwnAddrs, netipZero()) }, ErrBadOwnAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			tt.mutate(&cfg)
			s, err := New(cfg, []net.PacketConn{pc}, nil)
			if !errors.Is(err, tt.want) || s != nil {
				t.Fatalf("New = %v, %v; want nil, %v", s, err, tt.want)
			}
		})
	}
	if _, err := New(baseConfig(), nil, nil); !errors.Is(err, ErrNoSockets) {
		t.Fatalf("no sockets: %v", err)
	}
}
