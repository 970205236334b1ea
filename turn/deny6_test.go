package turn

import (
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestDenyTableIPv6: on an IPv6 relay (listeners and relay address on
// ::1), a peer at the IPv6 loopback address is refused: CreatePermission
// and ChannelBind get 403, the refusals are counted, and a listener bound
// at [::1] receives nothing from Send indications or ChannelData. With the
// allow-list admitting ::1 the same listener is reached, so the check can
// fail. Over UDP and TCP control connections. (The IPv4 classes, and the
// v4-mapped, 6to4 and NAT64 forms, are in TestDenyTable and
// TestDenyConnect; the other IPv6 classes cannot be bound on a test
// machine without adding interface addresses, so they are checked at the
// request level in TestDenyTable and by TestClassify.)
func TestDenyTableIPv6(t *testing.T) {
	checkLeaks(t)
	if ln, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Fatalf("this test needs IPv6 loopback (::1): %v", err)
	} else {
		_ = ln.Close()
	}
	for _, tcp := range []bool{false, true} {
		for _, allowed := range []bool{false, true} {
			name := map[bool]string{false: "udp", true: "tcp"}[tcp] + "/" + map[bool]string{false: "refused", true: "control"}[allowed]
			t.Run(name, func(t *testing.T) {
				h := startHarnessOn(t, "::1", func(c *Config) {
					c.RelayIP = net.IPv6loopback
					c.RelayBindAddress = "::1"
					c.AllowCIDRs = nil
					if allowed {
						c.AllowCIDRs = []string{"::1/128"}
					}
				})
				l := bindDenyListener6(t)
				peer := &net.UDPAddr{IP: net.IPv6loopback, Port: l.port()}
				u, p := restCreds("@mallory6:switchboard.test")
				c := dialRaw(t, h, tcp, u, p)
				if relayed := c.allocate(); relayed.IP.To4() != nil {
					t.Fatalf("relayed address %v is not IPv6", relayed)
				}
				before := h.metric("switchboard_turn_peer_denials_total", "reason", ReasonLoopback.String())
				perm := c.request(stun.MethodCreatePermission, peerAddr(peer))
				bind := c.request(stun.MethodChannelBind, channelNumber(0x4001), peerAddr(peer))
				c.send(sendIndication(peer, []byte("via send indication")))
				c.send(channelData(0x4001, []byte("via channel data"), tcp))
				if allowed {
					if perm.Type.Class != stun.ClassSuccessResponse || bind.Type.Class != stun.ClassSuccessResponse {
						t.Fatalf("allow-listed ::1: CreatePermission %d, ChannelBind %d", errorCode(perm), errorCode(bind))
					}
					if !l.arrived(t) {
						t.Fatal("allow-listed listener at ::1 received nothing")
					}
					return
				}
				if errorCode(perm) != 403 || errorCode(bind) != 403 {
					t.Fatalf("::1: CreatePermission %d, ChannelBind %d, want 403 and 403", errorCode(perm), errorCode(bind))
				}
				if got := h.metric("switchboard_turn_peer_denials_total", "reason", ReasonLoopback.String()); got != before+2 {
					t.Fatalf("denials{loopback} = %v, want %v", got, before+2)
				}
				// The server handles one client's messages in order: once
				// this Refresh is answered, the Send indication and the
				// ChannelData before it have been dealt with.
				if r := c.request(stun.MethodRefresh, lifetime(10*time.Minute)); r.Type.Class != stun.ClassSuccessResponse {
					t.Fatalf("refresh: %d", errorCode(r))
				}
				if !l.quiet(t) {
					t.Fatal("listener behind refused peer ::1 received data")
				}
			})
		}
	}
}

func bindDenyListener6(t *testing.T) denyListener {
	t.Helper()
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatalf("listen [::1]: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return denyListener{udp: c.(*net.UDPConn)}
}
