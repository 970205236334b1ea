package turn

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	pionturn "github.com/pion/turn/v5"
)

// closeWait bounds how long Close waits for pion's goroutines to let go of
// the relay sockets.
const closeWait = 5 * time.Second

// Server is a running TURN relay. It serves the sockets handed to New
// until Close.
type Server struct {
	cfg          Config
	log          *slog.Logger
	policy       *Policy
	auth         *authenticator
	nonces       nonceBook
	quotas       *quotas
	bindingLimit *ipLimiter
	metrics      *metrics
	pion         *pionturn.Server
	poller       *poller // nil: relay sockets are read by a goroutine each

	active sync.WaitGroup // one per open relay socket
	loops  sync.WaitGroup // one per UDP read loop and per accepted stream

	allocMu sync.Mutex
	byRelay map[relayKey]*allocState // guarded by allocMu
	byTuple sync.Map                 // tupleKey → *allocState
	streams sync.Map                 // tupleKey → *streamConn

	udpListeners map[netip.AddrPort]*packetListener // read-only after New

	connMu sync.Mutex
	conns  map[*streamConn]struct{} // guarded by connMu
	closed bool                     // guarded by connMu
}

// New starts a relay on the given sockets: packetConns are UDP listeners
// (e.g. :3478), listeners are TCP or TLS listeners (e.g. :3478 and :5349;
// a *tls.Conn from Accept is handshaken with a 10 s deadline). The caller
// keeps no ownership: Close closes them. New validates cfg first and opens
// nothing if it is wrong.
func New(cfg Config, packetConns []net.PacketConn, listeners []net.Listener) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if len(packetConns) == 0 && len(listeners) == 0 {
		return nil, ErrNoSockets
	}
	cfg = cfg.withDefaults()
	relayIP, _ := netip.AddrFromSlice(cfg.RelayIP)
	relayIP = relayIP.Unmap()
	bindIP, _ := netip.ParseAddr(cfg.RelayBindAddress)

	own := append([]netip.AddrPort(nil), cfg.OwnAddrs...)
	addOwn := func(a net.Addr) {
		if ap := addrPortOf(a); ap.IsValid() {
			own = append(own, ap, netip.AddrPortFrom(relayIP, ap.Port()))
			if ap.Addr().IsUnspecified() {
				// A wildcard socket is reachable on loopback as well.
				own = append(own, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port()),
					netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port()))
			}
		}
	}
	for _, pc := range packetConns {
		addOwn(pc.LocalAddr())
	}
	for _, l := range listeners {
		addOwn(l.Addr())
	}
	policy, err := NewPolicy(cfg.AllowCIDRs, cfg.DenyCIDRs, own)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("turn: registering metrics: %w", err)
	}

	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "turn"),
		policy: policy,
		auth: &authenticator{
			realm: cfg.Realm, secret: cfg.SharedSecret, maxTTL: cfg.MaxTTL,
			static: cfg.StaticUsers, now: cfg.Now,
		},
		quotas:       newQuotas(cfg.UserQuota, cfg.TotalQuota),
		bindingLimit: newIPLimiter(cfg.BindingRatePerSec, cfg.Now),
		metrics:      m,
		byRelay:      make(map[relayKey]*allocState),
		udpListeners: make(map[netip.AddrPort]*packetListener),
		conns:        make(map[*streamConn]struct{}),
	}
	gen := &relayGen{
		s: s, bind: bindIP, relay: relayIP, lo: cfg.RelayPortMin, hi: cfg.RelayPortMax,
		rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), //nolint:gosec // port choice, not a secret
	}
	// Clients on TCP/TLS streams get relay sockets read by a goroutine
	// each, as pion has them: writes to a stream may block, and that
	// goroutine may wait where the poller must not.
	streamGen := &relayGen{
		s: s, bind: bindIP, relay: relayIP, lo: cfg.RelayPortMin, hi: cfg.RelayPortMax, ownReader: true,
		rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), //nolint:gosec // port choice, not a secret
	}

	pcfg := pionturn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   s.authHandler,
		QuotaHandler:  s.quotaHandler,
		LoggerFactory: pionLogFactory{log: s.log},
		EventHandler: pionturn.EventHandler{
			OnAllocationCreated: s.onAllocationCreated,
			OnAllocationDeleted: s.onAllocationDeleted,
			OnChannelCreated:    s.onChannelCreated,
			OnChannelDeleted:    s.onChannelDeleted,
		},
	}
	for _, pc := range packetConns {
		if got := setSocketBuffers(pc, listenerSocketBuffer, true); got.read != 0 && !got.sized(listenerSocketBuffer) {
			s.log.Warn("TURN UDP listener socket buffers are smaller than asked for; under load the kernel will drop client packets. "+
				"Raise net.core.rmem_max and net.core.wmem_max, or give the process CAP_NET_ADMIN",
				"listener", pc.LocalAddr().String(), "want_bytes", listenerSocketBuffer,
				"read_bytes", got.read, "write_bytes", got.write)
		}
		s.loops.Add(1)
		pl := newPacketListener(pc, s)
		s.udpListeners[pl.local] = pl
		pcfg.PacketConnConfigs = append(pcfg.PacketConnConfigs, pionturn.PacketConnConfig{
			PacketConn:            pl,
			RelayAddressGenerator: gen,
			PermissionHandler:     s.permissionHandler,
		})
	}
	if s.poller, err = newPoller(m, cfg.Now, listenerList(s.udpListeners)); err != nil {
		s.log.Warn("turn: no relay poller; sockets are read one goroutine each", "err", err)
	}
	for _, l := range listeners {
		pcfg.ListenerConfigs = append(pcfg.ListenerConfigs, pionturn.ListenerConfig{
			Listener:              &streamListener{Listener: l, s: s},
			RelayAddressGenerator: streamGen,
			PermissionHandler:     s.permissionHandler,
		})
	}
	s.pion, err = pionturn.NewServer(pcfg)
	if err != nil {
		s.stopPoller()
		return nil, fmt.Errorf("turn: starting pion server: %w", err)
	}

	addrs := make([]string, 0, len(packetConns)+len(listeners))
	for _, pc := range packetConns {
		addrs = append(addrs, "udp/"+pc.LocalAddr().String())
	}
	for _, l := range listeners {
		addrs = append(addrs, "tcp/"+l.Addr().String())
	}
	s.log.Warn("TURN relay started: clients will be sent to this relay address",
		"relay_ip", relayIP.String(), "relay_bind", bindIP.String(),
		"relay_ports", fmt.Sprintf("%d-%d", cfg.RelayPortMin, cfg.RelayPortMax),
		"listeners", addrs, "realm", cfg.Realm,
		"rest_auth", cfg.SharedSecret != "", "static_users", len(cfg.StaticUsers),
		"allow_cidrs", cfg.AllowCIDRs, "deny_cidrs", cfg.DenyCIDRs)
	if r := Classify(relayIP); r != ReasonNone {
		s.log.Warn("TURN relay address is not publicly routable; remote clients cannot reach it",
			"relay_ip", relayIP.String(), "class", r.String())
	}
	return s, nil
}

// Close stops the relay: it closes the sockets handed to New, every client
// connection and every allocation, and waits (up to 5 s) for them to go.
func (s *Server) Close() error {
	s.connMu.Lock()
	if s.closed {
		s.connMu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*streamConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.connMu.Unlock()

	// The poller sends on the listeners: it stops before pion closes them.
	s.stopPoller()
	err := s.pion.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	done := make(chan struct{})
	go func() {
		s.loops.Wait()
		s.active.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
		s.log.Warn("turn: close timed out waiting for allocations to end")
	}
	return err
}

func (s *Server) stopPoller() {
	if s.poller != nil {
		s.poller.stop()
		s.logPollStats()
	}
}

// AllocationCount returns the number of relay sockets currently held.
func (s *Server) AllocationCount() int { return s.quotas.count() }

// authHandler answers pion's long-term credential lookup (RFC 8489 §9.2).
// Bad credentials are normally refused earlier, with 401, by the request
// inspector; this is the second check.
func (s *Server) authHandler(ra *pionturn.RequestAttributes) (string, []byte, bool) {
	userID, key, label, err := s.auth.lookup(ra.Username, ra.Realm)
	if err != nil {
		s.log.Debug("turn: credentials refused", "reason", label, "username", ra.Username)
		return "", nil, false
	}
	return userID, key, true
}

// quotaHandler refuses an allocation with 486 when the user or the server
// is at its quota (RFC 8656 §7.2 step 7).
func (s *Server) quotaHandler(userID, _ string, src net.Addr) bool {
	switch s.quotas.check(userID) {
	case 0:
		return true
	case 1:
		s.metrics.quotaRefusals[0].Inc()
		s.log.Info("turn: user allocation quota reached", "user", userID, "client", src.String(), "quota", s.cfg.UserQuota)
	default:
		s.metrics.quotaRefusals[1].Inc()
		s.log.Warn("turn: total allocation quota reached", "user", userID, "client", src.String(), "quota", s.cfg.TotalQuota)
	}
	return false
}

// permissionHandler is pion's hook for CreatePermission, ChannelBind and
// Connect. The request inspector has already refused denied peers with 403;
// this is the second check and sees only the IP.
func (s *Server) permissionHandler(client net.Addr, peer net.IP) bool {
	a, ok := netip.AddrFromSlice(peer)
	if !ok {
		return false
	}
	if r := s.policy.CheckIP(a); r != ReasonNone {
		s.metrics.denials[r].Inc()
		s.log.Debug("turn: permission refused by policy", "reason", r.String(), "peer", a.String(), "client", client.String())
		return false
	}
	return true
}

// packetListener is a client-facing UDP socket as pion sees it: inbound
// messages pass the ChannelData fast path or the request inspector first,
// outbound ones are watched for nonces. Reads are batched where the
// platform allows (listenerReader) and handed to pion one at a time.
type packetListener struct {
	net.PacketConn
	s      *Server
	local  netip.AddrPort
	once   sync.Once
	fd     int // the socket's descriptor for the relay poller, or -1
	family int // its address family (AF_INET, AF_INET6), with fd

	r     *listenerReader // used only by pion's read loop, when inbox is nil
	inbox *slowQueue      // when the relay poller reads the socket: what pion must see

	// detached: the relay poller took the socket out of Go's netpoller
	// (listener_linux.go) and fd is all there is of it; set before pion
	// starts. rawMu is held for reading around every use of fd then, and
	// for writing by Close.
	detached  bool
	rawMu     sync.RWMutex
	rawClosed bool // guarded by rawMu
}

func listenerList(m map[netip.AddrPort]*packetListener) []*packetListener {
	out := make([]*packetListener, 0, len(m))
	for _, l := range m {
		out = append(out, l)
	}
	return out
}

func newPacketListener(pc net.PacketConn, s *Server) *packetListener {
	l := &packetListener{PacketConn: pc, s: s, local: addrPortOf(pc.LocalAddr())}
	l.r, l.fd, l.family = newListenerReader(pc, l.take)
	return l
}

// take handles a datagram from a client before pion: ChannelData on a
// bound channel is relayed here, other messages pass the request
// inspector, whose answer is sent here. It reports whether pion must see
// the datagram.
func (c *packetListener) take(b []byte, src netip.AddrPort) bool {
	if isChannelData(b) {
		return !c.s.relayChannelData(b, src, c.local)
	}
	reply, pass := c.s.inspectInbound(b, src, c.local)
	if reply != nil {
		_, _ = c.write(reply, src)
	}
	return pass
}

func (c *packetListener) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.inbox != nil {
		pk, ok := c.inbox.get()
		if !ok {
			c.once.Do(c.s.loops.Done) // pion's read loop ends on any error
			return 0, nil, net.ErrClosed
		}
		n := copy(p, pk.buf[channelDataHeader:channelDataHeader+pk.n])
		from := pk.from
		c.inbox.recycle(pk)
		c.s.poller.resume(c.inbox)
		return n, net.UDPAddrFromAddrPort(from), nil
	}
	b, src, err := c.r.read()
	if err != nil {
		c.once.Do(c.s.loops.Done) // pion's read loop ends on any error
		return 0, nil, err
	}
	return copy(p, b), net.UDPAddrFromAddrPort(src), nil
}

// Close closes the socket and ends pion's read loop.
func (c *packetListener) Close() error {
	if c.inbox != nil {
		c.inbox.close()
	}
	if c.detached {
		return c.closeRaw()
	}
	return c.PacketConn.Close()
}

// WriteTo sends pion's messages to clients.
func (c *packetListener) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.s.observeOutbound(p)
	if c.detached {
		return c.writeRaw(p, addrPortOf(addr))
	}
	return c.PacketConn.WriteTo(p, addr)
}

// write sends p to dst on the socket, however it is held.
func (c *packetListener) write(p []byte, dst netip.AddrPort) (int, error) {
	if c.detached {
		return c.writeRaw(p, dst)
	}
	if uc, ok := c.PacketConn.(*net.UDPConn); ok {
		return uc.WriteToUDPAddrPort(p, dst)
	}
	return c.PacketConn.WriteTo(p, net.UDPAddrFromAddrPort(dst))
}

// streamListener hands pion wrapped TCP/TLS connections.
type streamListener struct {
	net.Listener
	s *Server
}

func (l *streamListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := newStreamConn(c, l.s)
	l.s.connMu.Lock()
	if l.s.closed {
		l.s.connMu.Unlock()
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.s.conns[sc] = struct{}{}
	l.s.loops.Add(1)
	l.s.connMu.Unlock()
	l.s.streams.Store(tupleKey{sc.remote, sc.local}, sc)
	return sc, nil
}
