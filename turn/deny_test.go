package turn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// denyListener is a socket standing where a refused peer would be, so the
// test can prove nothing arrives. It is read without a goroutine: loopback
// delivery is synchronous, so anything the relay sent before the sentinel
// packet arrived is already queued.
type denyListener struct {
	udp *net.UDPConn
	tcp *net.TCPListener
}

func (l denyListener) port() int {
	if l.udp != nil {
		return l.udp.LocalAddr().(*net.UDPAddr).Port
	}
	return l.tcp.Addr().(*net.TCPAddr).Port
}

// quiet reports whether nothing has arrived.
func (l denyListener) quiet(t *testing.T) bool {
	t.Helper()
	if l.udp != nil {
		_ = l.udp.SetReadDeadline(time.Now())
		n, from, err := l.udp.ReadFrom(make([]byte, 2048))
		if err == nil {
			t.Logf("listener got %d bytes from %v", n, from)
		}
		return isTimeout(err)
	}
	_ = l.tcp.SetDeadline(time.Now())
	c, err := l.tcp.Accept()
	if err == nil {
		t.Logf("listener accepted %v", c.RemoteAddr())
		_ = c.Close()
	}
	return isTimeout(err)
}

// arrived waits for something to arrive.
func (l denyListener) arrived(t *testing.T) bool {
	t.Helper()
	if l.udp != nil {
		_ = l.udp.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := l.udp.ReadFrom(make([]byte, 2048))
		return err == nil
	}
	_ = l.tcp.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := l.tcp.Accept()
	if err == nil {
		_ = c.Close()
	}
	return err == nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

func bindDenyListener(t *testing.T, tcp bool, addr string) denyListener {
	t.Helper()
	if tcp {
		ln, err := net.Listen("tcp4", addr)
		if err != nil {
			t.Fatalf("listen %s: %v", addr, err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		return denyListener{tcp: ln.(*net.TCPListener)}
	}
	c, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return denyListener{udp: c.(*net.UDPConn)}
}

// socketRow is a refused peer that has a real listener behind it on this
// machine (loopback aliases, and 0.0.0.0 which Linux delivers locally).
type socketRow struct {
	name   string
	peer   string // address the client names; the listener's port is added
	listen string // where the listener binds
	reason Reason
}

func socketRows(ownUDP, ownTCP int) []socketRow {
	return []socketRow{
		{"loopback alias", "127.0.0.2", "127.0.0.2:0", ReasonLoopback},
		{"v4-mapped loopback", "::ffff:127.0.0.2", "127.0.0.2:0", ReasonLoopback},
		{"unspecified", "0.0.0.0", "127.0.0.1:0", ReasonUnspecified},
		{"own udp listener", "127.0.0.5", fmt.Sprintf("127.0.0.5:%d", ownUDP), ReasonOwnAddress},
		{"own tcp listener", "127.0.0.5", fmt.Sprintf("127.0.0.5:%d", ownTCP), ReasonOwnAddress},
		{"operator deny list", "127.0.0.6", "127.0.0.6:0", ReasonDenyList},
	}
}

// reserveOwnPorts picks free ports on 127.0.0.5 to stand for the server's
// own listener addresses.
func reserveOwnPorts(t *testing.T) (udpPort, tcpPort int) {
	t.Helper()
	u, err := net.ListenPacket("udp4", "127.0.0.5:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.5:0")
	if err != nil {
		t.Fatal(err)
	}
	udpPort, tcpPort = u.LocalAddr().(*net.UDPAddr).Port, l.Addr().(*net.TCPAddr).Port
	_ = u.Close()
	_ = l.Close()
	return udpPort, tcpPort
}

func denyConfig(ownUDP, ownTCP int) func(*Config) {
	return func(c *Config) {
		c.AllowCIDRs = []string{"127.0.0.1/32", "127.0.0.6/32"}
		c.DenyCIDRs = []string{"127.0.0.6/32"}
		c.OwnAddrs = []netip.AddrPort{
			netip.AddrPortFrom(netip.MustParseAddr("127.0.0.5"), uint16(ownUDP)),
			netip.AddrPortFrom(netip.MustParseAddr("127.0.0.5"), uint16(ownTCP)),
		}
	}
}

func controlConfig(ownUDP, ownTCP int) func(*Config) {
	return func(c *Config) {
		denyConfig(ownUDP, ownTCP)(c)
		c.AllowCIDRs = []string{"127.0.0.0/8", "0.0.0.0/32"}
		c.DenyCIDRs = nil
	}
}

func udpAddrOf(t *testing.T, ip string, port int) *net.UDPAddr {
	t.Helper()
	a := netip.MustParseAddr(ip)
	return &net.UDPAddr{IP: a.AsSlice(), Port: port}
}

// TestDenyTable: for every refused address class, CreatePermission and
// ChannelBind are refused with 403, a Send indication goes nowhere, the
// denial is counted under its reason and logged once per allocation, and
// a listener at that address receives nothing; over UDP and TCP control
// connections. Rows with a real listener also run against a relay whose
// allow-list admits them, to prove the listener would have received.
func TestDenyTable(t *testing.T) {
	checkLeaks(t)
	ownUDP, ownTCP := reserveOwnPorts(t)
	for _, tcp := range []bool{false, true} {
		t.Run(map[bool]string{false: "udp", true: "tcp"}[tcp], func(t *testing.T) {
			h := startHarness(t, denyConfig(ownUDP, ownTCP))
			sentinel := listenUDPPeer(t, "127.0.0.1:0")
			u, p := restCreds("@mallory:switchboard.test")
			c := dialRaw(t, h, tcp, u, p)
			c.allocate()
			if r := c.request(stun.MethodCreatePermission, peerAddr(sentinel.addr())); r.Type.Class != stun.ClassSuccessResponse {
				t.Fatalf("sentinel permission: %d", errorCode(r))
			}
			channel := uint16(0x4000)
			check := func(t *testing.T, peer *net.UDPAddr, reason Reason, l *denyListener) {
				before := h.metric("switchboard_turn_peer_denials_total", "reason", reason.String())
				if r := c.request(stun.MethodCreatePermission, peerAddr(peer)); errorCode(r) != 403 {
					t.Fatalf("CreatePermission %v: code %d, want 403", peer, errorCode(r))
				}
				channel++
				if r := c.request(stun.MethodChannelBind, channelNumber(channel), peerAddr(peer)); errorCode(r) != 403 {
					t.Fatalf("ChannelBind %v: code %d, want 403", peer, errorCode(r))
				}
				c.send(sendIndication(peer, []byte("should not arrive")))
				c.send(channelData(channel, []byte("should not arrive either"), tcp))
				if got := h.metric("switchboard_turn_peer_denials_total", "reason", reason.String()); got != before+2 {
					t.Fatalf("denials{%v} = %v, want %v", reason, got, before+2)
				}
				msg := []byte(fmt.Sprintf("sentinel after %v", peer))
				c.send(sendIndication(sentinel.addr(), msg))
				sentinel.expect(t, msg)
				if l != nil && !l.quiet(t) {
					t.Fatalf("listener behind refused peer %v received data", peer)
				}
			}
			for _, row := range socketRows(ownUDP, ownTCP) {
				t.Run(row.name, func(t *testing.T) {
					l := bindDenyListener(t, false, row.listen)
					check(t, udpAddrOf(t, row.peer, l.port()), row.reason, &l)
				})
			}
			for _, row := range denyTable {
				a := netip.MustParseAddr(row.addr).WithZone("")
				if a.Unmap() == netip.MustParseAddr("127.0.0.1") {
					continue // the tests' allow-list admits 127.0.0.1 (the sentinel lives there)
				}
				t.Run(row.addr, func(t *testing.T) {
					check(t, &net.UDPAddr{IP: a.AsSlice(), Port: 9}, row.reason, nil)
				})
			}
			// Each reason is logged once for this allocation, however often
			// it was hit.
			logs := h.logs.String()
			for _, r := range []Reason{ReasonLoopback, ReasonPrivate, ReasonOwnAddress} {
				if n := countSubstr(logs, `msg="turn: peer refused by policy" component=turn reason=`+r.String()+" "); n != 1 {
					t.Errorf("reason %v logged %d times, want once per allocation", r, n)
				}
			}
		})
	}
}

func countSubstr(s, sub string) int {
	n := 0
	for i := 0; ; {
		j := indexFrom(s, sub, i)
		if j < 0 {
			return n
		}
		n++
		i = j + len(sub)
	}
}

func indexFrom(s, sub string, from int) int {
	for i := from; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestDenyTableControl is the positive control of TestDenyTable: with the
// allow-list admitting them, the same listeners do receive, so the
// "received nothing" checks above can fail.
func TestDenyTableControl(t *testing.T) {
	checkLeaks(t)
	ownUDP, ownTCP := reserveOwnPorts(t)
	h := startHarness(t, controlConfig(ownUDP, ownTCP))
	u, p := restCreds("@control:switchboard.test")
	c := dialRaw(t, h, false, u, p)
	c.allocate()
	for _, row := range socketRows(ownUDP, ownTCP) {
		if row.reason == ReasonOwnAddress {
			continue // refused even when allowed: TestOwnListenersDeniedWhenLoopbackAllowed
		}
		t.Run(row.name, func(t *testing.T) {
			l := bindDenyListener(t, false, row.listen)
			peer := udpAddrOf(t, row.peer, l.port())
			if r := c.request(stun.MethodCreatePermission, peerAddr(peer)); r.Type.Class != stun.ClassSuccessResponse {
				t.Fatalf("CreatePermission %v: %d", peer, errorCode(r))
			}
			c.send(sendIndication(peer, []byte("allowed")))
			if !l.arrived(t) {
				t.Fatalf("allow-listed peer %v received nothing", peer)
			}
		})
	}
}

// TestDenyConnect: RFC 6062 Connect toward a refused peer is answered 403
// and the TCP listener there sees no connection; with the allow-list
// admitting it, Connect succeeds and the listener is reached.
func TestDenyConnect(t *testing.T) {
	checkLeaks(t)
	ownUDP, ownTCP := reserveOwnPorts(t)
	rows := append(socketRows(ownUDP, ownTCP), socketRow{"private", "10.0.0.1", "", ReasonPrivate},
		socketRow{"nat64 loopback", "64:ff9b::7f00:2", "", ReasonLoopback},
		socketRow{"6to4 private", "2002:c0a8:101::1", "", ReasonPrivate},
		socketRow{"metadata", "169.254.169.254", "", ReasonLinkLocal})
	for _, allowed := range []bool{false, true} {
		t.Run(map[bool]string{false: "refused", true: "control"}[allowed], func(t *testing.T) {
			cfg := denyConfig(ownUDP, ownTCP)
			if allowed {
				cfg = controlConfig(ownUDP, ownTCP)
			}
			h := startHarness(t, cfg)
			u, p := restCreds("@tcp:switchboard.test")
			c := dialRaw(t, h, true, u, p)
			if r := c.request(stun.MethodAllocate, reqTransport(6)); r.Type.Class != stun.ClassSuccessResponse {
				t.Fatalf("TCP allocation: %d", errorCode(r))
			}
			for _, row := range rows {
				if allowed && (row.listen == "" || row.reason == ReasonOwnAddress) {
					continue // nothing to reach; own listeners stay refused (TestOwnListenersDeniedWhenLoopbackAllowed)
				}
				t.Run(row.name, func(t *testing.T) {
					port := 9
					var l *denyListener
					if row.listen != "" {
						dl := bindDenyListener(t, true, row.listen)
						l, port = &dl, dl.port()
					}
					peer := netip.MustParseAddr(row.peer)
					before := h.metric("switchboard_turn_peer_denials_total", "reason", row.reason.String())
					r := c.request(stun.MethodConnect, tcpPeerAddr(&net.TCPAddr{IP: peer.AsSlice(), Port: port}))
					if allowed {
						if r.Type.Class != stun.ClassSuccessResponse {
							t.Fatalf("Connect %v: %d", peer, errorCode(r))
						}
						if !l.arrived(t) {
							t.Fatal("allow-listed listener was not reached")
						}
						return
					}
					if errorCode(r) != 403 {
						t.Fatalf("Connect %v: code %d, want 403", peer, errorCode(r))
					}
					if got := h.metric("switchboard_turn_peer_denials_total", "reason", row.reason.String()); got != before+1 {
						t.Fatalf("denials{%v} = %v, want %v", row.reason, got, before+1)
					}
					if l != nil && !l.quiet(t) {
						t.Fatal("listener behind refused peer was connected to")
					}
				})
			}
		})
	}
}

// TestOwnListenersDeniedWhenLoopbackAllowed (issue 20): with an allow-list
// admitting all of loopback, as --dev sets it, the server's own listeners
// (given in OwnAddrs, and the relay's own TURN sockets) stay refused over
// real loopback UDP and TCP, while another port of the same address is
// reached.
func TestOwnListenersDeniedWhenLoopbackAllowed(t *testing.T) {
	checkLeaks(t)
	ownUDP, ownTCP := reserveOwnPorts(t)
	h := startHarness(t, controlConfig(ownUDP, ownTCP))
	u, p := restCreds("@local:switchboard.test")
	c := dialRaw(t, h, false, u, p)
	c.allocate()
	own := bindDenyListener(t, false, fmt.Sprintf("127.0.0.5:%d", ownUDP))
	other := listenUDPPeer(t, "127.0.0.5:0") // same address, not a listener of ours
	// A permission naming our own listener is refused; one naming another
	// port of the address is granted, and covers the whole IP (RFC 8656
	// §9), so the per-datagram check must refuse our own port.
	if r := c.request(stun.MethodCreatePermission, peerAddr(udpAddrOf(t, "127.0.0.5", ownUDP))); errorCode(r) != 403 {
		t.Fatalf("permission naming our own listener: code %d, want 403", errorCode(r))
	}
	for _, peer := range []*net.UDPAddr{other.addr(), {IP: h.udpAddr.IP, Port: 9}} {
		if r := c.request(stun.MethodCreatePermission, peerAddr(peer)); r.Type.Class != stun.ClassSuccessResponse {
			t.Fatalf("permission for allow-listed %v: %d", peer, errorCode(r))
		}
	}
	for _, peer := range []*net.UDPAddr{
		udpAddrOf(t, "127.0.0.5", ownUDP),
		{IP: h.udpAddr.IP, Port: h.udpAddr.Port}, // the relay's own TURN socket
		udpAddrOf(t, "::ffff:127.0.0.5", ownUDP),
	} {
		before := h.metric("switchboard_turn_peer_denials_total", "reason", ReasonOwnAddress.String())
		c.send(sendIndication(peer, []byte("into our own port")))
		testkit.Eventually(t, 5*time.Second, fmt.Sprintf("own-address denial of %v counted", peer), func() bool {
			return h.metric("switchboard_turn_peer_denials_total", "reason", ReasonOwnAddress.String()) == before+1
		})
	}
	msg := []byte("to another port of the same address")
	c.send(sendIndication(other.addr(), msg))
	other.expect(t, msg)
	if !own.quiet(t) {
		t.Fatal("the server's own UDP listener received relayed data")
	}
	// RFC 6062 Connect to our own TCP listener is refused too.
	ownT := bindDenyListener(t, true, fmt.Sprintf("127.0.0.5:%d", ownTCP))
	tc := dialRaw(t, h, true, u, p)
	if r := tc.request(stun.MethodAllocate, reqTransport(6)); r.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("TCP allocation: %d", errorCode(r))
	}
	if r := tc.request(stun.MethodConnect, tcpPeerAddr(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 5), Port: ownTCP})); errorCode(r) != 403 {
		t.Fatalf("Connect to own TCP listener: code %d, want 403", errorCode(r))
	}
	if !ownT.quiet(t) {
		t.Fatal("the server's own TCP listener was connected to")
	}
}
