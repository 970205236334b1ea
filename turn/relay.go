package turn

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v4/reuseport"
	pionturn "github.com/pion/turn/v5"
)

// This file is the relay side: pion asks relayGen for relay sockets
// (RFC 8656 §7.2 step 8, RFC 6062 §5.2 for TCP) and gets wrapped ones that
// enforce the peer policy on every datagram and connection, cap bandwidth,
// count traffic and give the allocation back to the quota on close.

// connectTimeout is how long a Connect request may take to reach its peer;
// RFC 6062 §5.2 requires at least 30 seconds.
const connectTimeout = 30 * time.Second

// allocState is what Switchboard keeps per allocation, beside pion's own.
type allocState struct {
	s         *Server
	user      string
	transport int // transportUDP or transportTCP (of the relay)
	relay     netip.AddrPort
	client    atomic.Pointer[string] // set when pion reports the allocation
	logged    atomic.Uint32          // bit per Reason already logged
	toPeer    *bucket
	toClient  *bucket
	released  sync.Once

	// Fast path (fastpath.go).
	udpRelay net.PacketConn            // the relay socket; nil for TCP allocations
	out      atomic.Pointer[clientOut] // how to reach the client
	chans    atomic.Pointer[chanTable] // channel bindings, copy-on-write
	chanMu   sync.Mutex                // serialises chans updates
}

// denied counts a refused peer and logs it the first time this allocation
// hits that reason.
func (a *allocState) denied(peer netip.AddrPort, r Reason, what string) {
	a.s.metrics.denials[r].Inc()
	bit := uint32(1) << r
	for {
		old := a.logged.Load()
		if old&bit != 0 {
			return
		}
		if a.logged.CompareAndSwap(old, old|bit) {
			break
		}
	}
	client := ""
	if c := a.client.Load(); c != nil {
		client = *c
	}
	a.s.log.Info("turn: peer refused by policy", "reason", r.String(), "peer", peer.String(),
		"request", what, "user", a.user, "client", client, "relay", a.relay.String())
}

func (a *allocState) release() {
	a.released.Do(func() {
		a.s.quotas.release(a.user)
		a.s.metrics.allocations.Dec()
		a.s.forgetRelay(a)
		a.s.active.Done()
	})
}

// relayGen implements pion's RelayAddressGenerator.
type relayGen struct {
	s      *Server
	bind   netip.Addr
	relay  netip.Addr
	lo, hi uint16
	// ownReader: UDP relay sockets are Go's, read by pion's goroutine
	// (relayPacketConn), even when the server has a relay poller.
	ownReader bool

	mu  sync.Mutex
	rng *rand.Rand // guarded by mu
}

var _ pionturn.RelayAddressGenerator = (*relayGen)(nil)

func (g *relayGen) Validate() error { return nil }

// bindFor returns the local address to bind a relay socket of network to.
func (g *relayGen) bindFor(network string) (netip.Addr, error) {
	want6 := network == "udp6" || network == "tcp6"
	if g.relay.Is4() == want6 {
		return netip.Addr{}, fmt.Errorf("turn: relay address %v cannot serve %s", g.relay, network)
	}
	if g.bind.IsUnspecified() {
		if want6 {
			return netip.IPv6Unspecified(), nil
		}
		return netip.IPv4Unspecified(), nil
	}
	if g.bind.Is4() == want6 {
		return netip.Addr{}, fmt.Errorf("turn: relay bind address %v cannot serve %s", g.bind, network)
	}
	return g.bind, nil
}

func (g *relayGen) randomPort() uint16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lo + uint16(g.rng.IntN(int(g.hi-g.lo)+1))
}

// ports calls try with the requested port, or with random ports of the
// range until one works (at most 64 tries).
func (g *relayGen) ports(requested int, try func(port uint16) error) error {
	if requested != 0 {
		if requested < int(g.lo) || requested > int(g.hi) {
			return fmt.Errorf("turn: requested port %d outside the relay range", requested)
		}
		return try(uint16(requested))
	}
	var err error
	for range 64 {
		if err = try(g.randomPort()); err == nil {
			return nil
		}
	}
	return fmt.Errorf("turn: no free relay port: %w", err)
}

func (g *relayGen) newState(user string, transport int, port uint16) (*allocState, error) {
	// Count the socket before Close can start waiting for sockets, and
	// refuse new ones once it has.
	g.s.connMu.Lock()
	if g.s.closed {
		g.s.connMu.Unlock()
		return nil, ErrClosed
	}
	g.s.active.Add(1)
	g.s.connMu.Unlock()
	if !g.s.quotas.acquire(user) {
		g.s.active.Done()
		return nil, ErrQuota
	}
	g.s.metrics.allocations.Inc()
	now := g.s.cfg.Now()
	rate := float64(g.s.cfg.BandwidthBytesPerSec)
	return &allocState{
		s: g.s, user: user, transport: transport,
		relay:    netip.AddrPortFrom(g.relay, port),
		toPeer:   newBucket(rate, rate, now),
		toClient: newBucket(rate, rate, now),
	}, nil
}

// AllocatePacketConn opens a UDP relay socket (RFC 8656 §7.2).
func (g *relayGen) AllocatePacketConn(conf pionturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	bind, err := g.bindFor(conf.Network)
	if err != nil {
		return nil, nil, err
	}
	if g.s.poller != nil && !g.ownReader {
		return g.allocatePolled(conf, bind)
	}
	var conn net.PacketConn
	err = g.ports(conf.RequestedPort, func(port uint16) error {
		var lerr error
		conn, lerr = net.ListenPacket(conf.Network, netip.AddrPortFrom(bind, port).String()) //nolint:noctx
		return lerr
	})
	if err != nil {
		return nil, nil, err
	}
	setSocketBuffers(conn, relaySocketBuffer, false)
	port := conn.LocalAddr().(*net.UDPAddr).Port //nolint:forcetypeassert // a udp socket
	st, err := g.newState(conf.UserID, transportUDP, uint16(port))
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	g.s.rememberRelay(st)
	rc := &relayPacketConn{PacketConn: conn, st: st, m: g.s.metrics, policy: g.s.policy, now: g.s.cfg.Now,
		buf: make([]byte, channelDataHeader+relayReadSize+3)}
	rc.udp, _ = conn.(*net.UDPConn)
	st.udpRelay = rc
	return rc, &net.UDPAddr{IP: g.relay.AsSlice(), Port: port}, nil
}

// AllocateListener opens a TCP relay listener (RFC 6062 §5.1).
func (g *relayGen) AllocateListener(conf pionturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	bind, err := g.bindFor(conf.Network)
	if err != nil {
		return nil, nil, err
	}
	lc := net.ListenConfig{Control: reuseport.Control}
	var ln net.Listener
	err = g.ports(conf.RequestedPort, func(port uint16) error {
		var lerr error
		ln, lerr = lc.Listen(context.Background(), conf.Network, netip.AddrPortFrom(bind, port).String())
		return lerr
	})
	if err != nil {
		return nil, nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port //nolint:forcetypeassert // a tcp listener
	st, err := g.newState(conf.UserID, transportTCP, uint16(port))
	if err != nil {
		_ = ln.Close()
		return nil, nil, err
	}
	g.s.rememberRelay(st)
	return &relayListener{Listener: ln, st: st}, &net.TCPAddr{IP: g.relay.AsSlice(), Port: port}, nil
}

// AllocateConn opens the relay's TCP connection to a peer for a Connect
// request (RFC 6062 §5.2), from the allocation's relay port.
func (g *relayGen) AllocateConn(conf pionturn.AllocateConnConfig) (net.Conn, error) {
	remote, ok := conf.RemoteAddr.(*net.TCPAddr)
	if !ok {
		return nil, ErrPeerDenied
	}
	local, ok := conf.LocalAddr.(*net.TCPAddr)
	if !ok {
		return nil, ErrPeerDenied
	}
	st := g.s.relayByPort(transportTCP, uint16(local.Port))
	peer := remote.AddrPort()
	if r := g.s.policy.Check(peer); r != ReasonNone {
		if st != nil {
			st.denied(peer, r, "Connect")
		} else {
			g.s.metrics.denials[r].Inc()
		}
		return nil, fmt.Errorf("%w: %v (%v)", ErrPeerDenied, peer, r)
	}
	bind, err := g.bindFor(conf.Network)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(bind, uint16(local.Port))),
		Control:   reuseport.Control,
		Timeout:   connectTimeout,
	}
	c, err := d.Dial(conf.Network, peer.String()) //nolint:noctx
	if err != nil {
		return nil, err
	}
	if st == nil {
		return c, nil
	}
	return &relayStreamConn{Conn: c, st: st}, nil
}

// relayPacketConn is a UDP relay socket. WriteTo carries client data to
// peers (Send indications and ChannelData, RFC 8656 §10.2 and §12.6);
// ReadFrom carries peer data toward the client. Neither allocates.
type relayPacketConn struct {
	net.PacketConn
	st     *allocState
	m      *metrics
	policy *Policy
	now    func() time.Time
	buf    []byte       // read buffer with room for a ChannelData header; pion's goroutine only
	udp    *net.UDPConn // the socket itself, when it is one, for allocation-free reads
}

func (c *relayPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, ErrPeerDenied
	}
	peer := ua.AddrPort()
	if r := c.policy.Check(peer); r != ReasonNone {
		c.st.denied(peer, r, "Send")
		return 0, ErrPeerDenied
	}
	if !c.st.toPeer.allow(len(p), c.now()) {
		c.m.bandwidthDrop.Inc()
		return len(p), nil
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	if err == nil {
		c.m.relayedBytes[transportUDP][dirToPeer].Add(float64(n))
		c.m.relayedPkts[transportUDP][dirToPeer].Inc()
	}
	return n, err
}

// ReadFrom returns the next datagram from a peer. Datagrams from a peer
// bound to a channel are sent to the client as ChannelData right here
// (RFC 8656 §12.7) and never reach pion; the others go to pion, which sends
// them as Data indications if a permission allows.
func (c *relayPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		buf := c.buf[channelDataHeader : channelDataHeader+relayReadSize]
		var (
			n    int
			peer netip.AddrPort
			addr net.Addr
			err  error
		)
		if c.udp != nil {
			n, peer, err = c.udp.ReadFromUDPAddrPort(buf) // no allocation
		} else {
			n, addr, err = c.PacketConn.ReadFrom(buf)
			peer = addrPortOf(addr)
		}
		if err != nil {
			return 0, addr, err
		}
		if !c.st.toClient.allow(n, c.now()) {
			c.m.bandwidthDrop.Inc()
			continue
		}
		c.m.relayedBytes[transportUDP][dirToClient].Add(float64(n))
		c.m.relayedPkts[transportUDP][dirToClient].Inc()
		if c.st.forwardChannelData(c.buf, n, peer) {
			continue
		}
		if addr == nil {
			addr = net.UDPAddrFromAddrPort(peer)
		}
		return copy(p, c.buf[channelDataHeader:channelDataHeader+n]), addr, nil
	}
}

func (c *relayPacketConn) Close() error {
	err := c.PacketConn.Close()
	c.st.release()
	return err
}

// relayListener is a TCP allocation's relayed listener (RFC 6062 §5.3).
type relayListener struct {
	net.Listener
	st *allocState
}

func (l *relayListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &relayStreamConn{Conn: c, st: l.st}, nil
}

func (l *relayListener) Close() error {
	err := l.Listener.Close()
	l.st.release()
	return err
}

// relayStreamConn is a peer data connection of a TCP allocation. Reads
// (peer to client) and writes (client to peer) are counted and slowed to
// the allocation's bandwidth cap.
type relayStreamConn struct {
	net.Conn
	st *allocState
}

func (c *relayStreamConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		m := c.st.s.metrics
		m.relayedBytes[transportTCP][dirToClient].Add(float64(n))
		m.relayedPkts[transportTCP][dirToClient].Inc()
		c.throttle(c.st.toClient, n)
	}
	return n, err
}

func (c *relayStreamConn) Write(p []byte) (int, error) {
	c.throttle(c.st.toPeer, len(p))
	n, err := c.Conn.Write(p)
	if n > 0 {
		m := c.st.s.metrics
		m.relayedBytes[transportTCP][dirToPeer].Add(float64(n))
		m.relayedPkts[transportTCP][dirToPeer].Inc()
	}
	return n, err
}

// throttle waits out any bandwidth debt, at most a second at a time.
func (c *relayStreamConn) throttle(b *bucket, n int) {
	if d := b.take(n, c.st.s.cfg.Now()); d > 0 {
		time.Sleep(min(d, time.Second))
	}
}
