//go:build linux

package turn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"
	"unsafe"

	pionturn "github.com/pion/turn/v5"
	"golang.org/x/sys/unix"
)

// This file is the relay poller: one goroutine that waits on every UDP
// relay socket at once with epoll(7), reads each ready socket with
// recvmmsg(2) and sends what is bound for clients on UDP listeners with one
// sendmmsg(2) per round, as ChannelData (RFC 8656 §12.7).
//
// Why: with one goroutine per relay socket (pion's model, and Go's net
// package under it), every datagram from a peer costs a netpoller wake-up,
// a goroutine switch, a read, a second read that finds the socket empty and
// a send, and the scheduler's thread hand-offs on top; that was about
// two thirds of the relay's CPU (bench/turn/README.md). Here a round of
// epoll_wait serves every ready socket, a read takes what the socket holds,
// and the sends of a round leave together. The loop's goroutine blocks in
// epoll_wait itself rather than in Go's netpoller: parked there, each
// round also cost the netpoller's epoll_wait, an unpark, a look at an
// empty epoll set and idle threads woken to look for work, which left
// Switchboard with 1.8 times coturn's context switches per packet.
//
// Relay sockets are opened here, outside Go's netpoller, so that a datagram
// wakes this loop only. pion still owns the allocation: it gets a
// net.PacketConn (polledRelay) whose ReadFrom hands it the datagrams the
// poller does not send itself (from peers without a channel, for Data
// indications, and everything for clients on TCP/TLS streams, whose writes
// may block and so are made on pion's goroutine, one per allocation), and
// whose WriteTo sends client data to peers after the peer policy check.

const (
	pollerEvents = 128 // epoll events per round
	pollerSlots  = 128 // datagrams held per round before a flush
	// slowQueueLen is how many datagrams may wait for pion per allocation,
	// listenerQueueLen per client listener; buffers are allocated as
	// needed, up to this many.
	slowQueueLen     = 256
	listenerQueueLen = 1024
	// listenerID marks the epoll ids of client listeners (the index in
	// poller.listeners below it); relay sockets have ids from 1 below it.
	listenerID uint32 = 1 << 31
)

// poller owns the epoll set of the UDP relay sockets and client listeners.
// Its goroutine blocks in epoll_wait itself, outside Go's netpoller, as
// coturn's event loops do: a burst of datagrams wakes one thread, once,
// with no netpoller hand-off, no goroutine to unpark and no idle thread
// woken to look for work (each of those is a context switch on Go's side;
// see bench/turn/README.md for the counts). The Go runtime sees a
// goroutine in a system call; the others run on the remaining Ps.
type poller struct {
	epfd int
	evfd int           // eventfd that stop writes to end the loop
	done chan struct{} // closed when run returns

	listeners []*packetListener // by epoll id - listenerID; set before run starts

	mu      sync.Mutex
	relays  map[uint32]*polledRelay // by epoll id; guarded by mu
	nextID  uint32                  // guarded by mu
	stopped bool                    // guarded by mu

	// Used by run only.
	now    func() time.Time
	m      *metrics
	events []unix.EpollEvent
	recv   *mmsgBatch
	used   int // recv slots holding datagrams of this round
	send   sendBatch
	stats  pollStats
	// lastYield is when the loop last yielded its P (run).
	lastYield time.Time
}

// yieldEvery is how often the loop yields at most: under sysmon's 10 ms
// preemption limit with a margin for its own tick.
const yieldEvery = 4 * time.Millisecond

// pollStats counts the loop's work, for the batch sizes in tests and
// benchmarks; written by run only, read once it has stopped.
type pollStats struct {
	wakeups    uint64 // epoll_wait calls that returned events
	recvCalls  uint64 // recvmmsg calls that returned datagrams
	recvDgrams uint64
	sendCalls  uint64 // sendmmsg calls
	sendDgrams uint64
}

// sendBatch is the ChannelData of one round bound for one listener socket.
type sendBatch struct {
	fd   int
	hdrs []mmsghdr
	iovs []unix.Iovec
	n    int
}

// stopID is the epoll id of the poller's eventfd; relay sockets never get 0.
const stopID uint32 = 0

// newPoller starts the relay poller. It also reads the client listeners
// that are UDP sockets: ChannelData is relayed in its loop, and other
// messages go to pion's read loop through the listener's queue. Each such
// listener is taken out of Go's netpoller (packetListener.detach),
// which would otherwise wake a thread for every datagram it receives and
// every send that frees buffer space, only to find no goroutine waiting.
func newPoller(m *metrics, now func() time.Time, listeners []*packetListener) (*poller, error) {
	p, err := buildPoller(m, now)
	if err != nil {
		return nil, err
	}
	for _, l := range listeners {
		if l.fd < 0 {
			continue
		}
		id := listenerID + uint32(len(p.listeners))
		if err := l.detach(p.epfd, id); err != nil {
			// pion's read loop keeps reading it, with the fast path.
			l.s.log.Warn("turn: UDP listener left to its own reader", "listener", l.local.String(), "err", err)
			continue
		}
		l.inbox = newSlowQueue(listenerQueueLen)
		l.inbox.fd, l.inbox.epollID = l.fd, id
		p.listeners = append(p.listeners, l)
	}
	go p.run()
	return p, nil
}

// buildPoller makes a poller without starting its loop.
func buildPoller(m *metrics, now func() time.Time) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("turn: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("turn: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(stopID)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		_ = unix.Close(evfd)
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("turn: epoll_ctl: %w", err)
	}
	p := &poller{
		epfd: epfd, evfd: evfd, done: make(chan struct{}),
		relays: make(map[uint32]*polledRelay), nextID: 1,
		now: now, m: m,
		events: make([]unix.EpollEvent, pollerEvents),
		recv:   newMmsgBatch(pollerSlots, channelDataHeader+relayReadSize+3),
		send: sendBatch{
			fd: -1, hdrs: make([]mmsghdr, pollerSlots), iovs: make([]unix.Iovec, pollerSlots),
		},
	}
	return p, nil
}

func (p *poller) closeFDs() {
	_ = unix.Close(p.evfd)
	_ = unix.Close(p.epfd)
}

// stop ends the loop and waits for it. Relay sockets still open are closed
// by their owners afterwards, directly.
func (p *poller) stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.mu.Unlock()
	one := [8]byte{1}
	_, _ = unix.Write(p.evfd, one[:]) // little- or big-endian, it is not zero
	<-p.done
	p.closeFDs()
}

// run is the loop: it blocks in epoll_wait until some socket is readable,
// serves every ready socket, and goes back. Sockets are level triggered,
// so one left with data (a drain stops after a few batches to be fair to
// the others) is simply reported again by the next epoll_wait.
func (p *poller) run() {
	defer close(p.done)
	for {
		n, err := unix.EpollWait(p.epfd, p.events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return // only a closed or broken epoll set gets here
		}
		p.stats.wakeups++
		now := p.now()
		for i := range n {
			id := uint32(p.events[i].Fd)
			switch {
			case id == stopID:
				p.flush()
				return
			case id >= listenerID:
				p.drainListener(p.listeners[id-listenerID])
			default:
				p.mu.Lock()
				r := p.relays[id]
				p.mu.Unlock()
				if r != nil {
					p.drain(r, now)
				}
			}
		}
		p.flush()
		// Let the scheduler see a new goroutine tick on this P now and
		// then. Blocking system calls do not count as one: without this,
		// sysmon finds the same goroutine on the P after 10 ms
		// (forcePreemptNS), signals its thread and takes the P away in
		// the middle of epoll_wait, and keeps its own ticks short while it
		// does (bench/turn/README.md). A yield wakes an idle thread to
		// look for work, so it is made at most every yieldEvery.
		if now.Sub(p.lastYield) >= yieldEvery {
			p.lastYield = now
			runtime.Gosched()
		}
	}
}

// drain reads what relay socket r holds, a few batches at most (level
// triggered: the next epoll_wait reports a socket left with data again).
func (p *poller) drain(r *polledRelay, now time.Time) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return
	}
	for range 4 {
		if p.used == len(p.recv.hdrs) {
			p.flush()
		}
		free := p.batchFor(r.slow, p.recv.hdrs[p.used:])
		if len(free) == 0 {
			return
		}
		p.recv.armRecv(p.used, channelDataHeader)
		n, err := recvmmsg(r.fd, free)
		if err != nil || n == 0 {
			return
		}
		p.stats.recvCalls++
		p.stats.recvDgrams += uint64(n)
		for i := range n {
			p.handle(r, p.used+i, now)
		}
		p.used += n
		if n < len(free) {
			return
		}
	}
}

// drainListener reads what client listener l holds, a few batches at
// most. ChannelData on a bound channel goes to its peer at once; the rest
// passes the request inspector to pion.
func (p *poller) drainListener(l *packetListener) {
	for range 4 {
		if p.used == len(p.recv.hdrs) {
			p.flush()
		}
		free := p.batchFor(l.inbox, p.recv.hdrs[p.used:])
		if len(free) == 0 {
			return
		}
		p.recv.armRecv(p.used, 0)
		n, err := recvmmsg(l.fd, free)
		if err != nil || n == 0 {
			return
		}
		p.stats.recvCalls++
		p.stats.recvDgrams += uint64(n)
		for i := p.used; i < p.used+n; i++ {
			b, from := p.recv.bufs[i][:p.recv.hdrs[i].n], addrFromRaw(&p.recv.names[i])
			if l.take(b, from) {
				l.inbox.put(b, from)
			}
		}
		p.used += n
		if n < len(free) {
			return
		}
	}
}

// pause stops reading q's socket while the pion goroutine that empties q
// is a whole queue behind: datagrams then wait in the socket's buffer, as
// they would for pion's own reader, instead of being dropped. The reader
// resumes it. It reports whether it paused (false: q has room again).
func (p *poller) pause(q *slowQueue) bool {
	q.pauseMu.Lock()
	defer q.pauseMu.Unlock()
	if q.room() > 0 {
		return false
	}
	ev := unix.EpollEvent{Fd: int32(q.epollID)}
	if unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, q.fd, &ev) != nil {
		return false
	}
	q.paused = true
	return true
}

// resume reads q's socket again once its reader has caught up to half the
// queue; the reader calls it after each datagram, with the socket open.
func (p *poller) resume(q *slowQueue) {
	q.pauseMu.Lock()
	defer q.pauseMu.Unlock()
	if !q.paused || q.room() < cap(q.queue)/2 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(q.epollID)}
	if unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, q.fd, &ev) == nil {
		q.paused = false
	}
}

// batchFor limits free to the room left in q, pausing q's socket when
// there is none; nil means read nothing now.
func (p *poller) batchFor(q *slowQueue, free []mmsghdr) []mmsghdr {
	room := q.room()
	if room == 0 {
		if p.pause(q) {
			return nil
		}
		room = q.room()
	}
	return free[:min(len(free), room)]
}

// handle relays the datagram in recv slot i from relay r toward the client:
// into the round's send batch if the client is on a UDP listener and the
// peer has a channel, to pion otherwise.
func (p *poller) handle(r *polledRelay, i int, now time.Time) {
	n := int(p.recv.hdrs[i].n)
	buf := p.recv.bufs[i]
	peer := addrFromRaw(&p.recv.names[i])
	st := r.st
	if !st.toClient.allow(n, now) {
		p.m.bandwidthDrop.Inc()
		return
	}
	p.m.relayedBytes[transportUDP][dirToClient].Add(float64(n))
	p.m.relayedPkts[transportUDP][dirToClient].Inc()
	if t, out := st.chans.Load(), st.out.Load(); t != nil && out != nil && out.lfd >= 0 {
		if number, ok := t.byPeer[peer]; ok {
			putChannelDataHeader(buf, number, n)
			p.queueSend(out.lfd, i, channelDataHeader+n, &out.raw)
			return
		}
	}
	r.slow.put(buf[channelDataHeader:channelDataHeader+n], peer)
}

// queueSend adds recv slot i's first n bytes, for dst on listener fd, to
// the send batch.
func (p *poller) queueSend(fd, i, n int, dst *rawAddr) {
	s := &p.send
	if s.n > 0 && s.fd != fd {
		p.sendAll()
	}
	s.fd = fd
	s.iovs[s.n].Base = &p.recv.bufs[i][0]
	s.iovs[s.n].SetLen(n)
	h := &s.hdrs[s.n].hdr
	h.Name = (*byte)(unsafe.Pointer(&dst.sa))
	h.Namelen = dst.len
	h.Iov = &s.iovs[s.n]
	h.SetIovlen(1)
	s.n++
}

// flush sends the batch and frees the recv slots.
func (p *poller) flush() {
	p.sendAll()
	p.used = 0
}

// sendAll sends the batch with sendmmsg. A full socket buffer is waited
// out briefly, then the rest is dropped (UDP); a datagram the kernel
// refuses is skipped.
func (p *poller) sendAll() {
	s := &p.send
	waits := 0
	for off := 0; off < s.n; {
		k, err := sendmmsg(s.fd, s.hdrs[off:s.n])
		p.stats.sendCalls++
		switch {
		case err == nil:
			p.stats.sendDgrams += uint64(k)
			off += k
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN) && waits < 3:
			waits++
			waitWritable(s.fd, 10)
		case errors.Is(err, unix.EAGAIN):
			off = s.n
		default:
			off++
		}
	}
	s.n = 0
}

// polledRelay is a UDP relay socket served by the poller, as pion sees it.
type polledRelay struct {
	p      *poller
	id     uint32
	fd     int
	family int
	local  *net.UDPAddr
	st     *allocState
	m      *metrics
	policy *Policy
	now    func() time.Time

	// mu is held for reading around every use of fd, and for writing by
	// Close, which closes it.
	mu     sync.RWMutex
	closed bool // guarded by mu

	slow *slowQueue // datagrams for pion; closed by Close
}

// allocatePolled opens a UDP relay socket on bind:port, served by the
// poller (RFC 8656 §7.2 step 8).
func (g *relayGen) allocatePolled(conf pionturn.AllocateListenerConfig, bind netip.Addr) (net.PacketConn, net.Addr, error) {
	family := unix.AF_INET
	if conf.Network == "udp6" {
		family = unix.AF_INET6
	}
	var fd int
	var port uint16
	err := g.ports(conf.RequestedPort, func(pt uint16) error {
		var oerr error
		fd, oerr = openRelaySocket(family, bind, pt)
		port = pt
		return oerr
	})
	if err != nil {
		return nil, nil, err
	}
	st, err := g.newState(conf.UserID, transportUDP, port)
	if err != nil {
		_ = unix.Close(fd)
		return nil, nil, err
	}
	p := g.s.poller
	r := &polledRelay{
		p: p, fd: fd, family: family, st: st, m: g.s.metrics, policy: g.s.policy, now: g.s.cfg.Now,
		local: net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, port)),
		slow:  newSlowQueue(slowQueueLen),
	}
	st.udpRelay = r
	g.s.rememberRelay(st)
	if err := p.add(r); err != nil {
		_ = r.Close()
		return nil, nil, err
	}
	return r, &net.UDPAddr{IP: g.relay.AsSlice(), Port: int(port)}, nil
}

// openRelaySocket opens a non-blocking UDP socket bound to bind:port, kept
// out of Go's netpoller.
func openRelaySocket(family int, bind netip.Addr, port uint16) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, err
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(port), Addr: bind.Unmap().As4()}
	} else {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
		sa = &unix.SockaddrInet6{Port: int(port), Addr: bind.As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, relaySocketBuffer)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, relaySocketBuffer)
	return fd, nil
}

// add registers r with the poller.
func (p *poller) add(r *polledRelay) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return ErrClosed
	}
	for p.relays[p.nextID] != nil || p.nextID == 0 || p.nextID >= listenerID {
		if p.nextID >= listenerID {
			p.nextID = 0
		}
		p.nextID++
	}
	r.id = p.nextID
	p.nextID++
	r.slow.fd, r.slow.epollID = r.fd, r.id
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(r.id)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, r.fd, &ev); err != nil {
		return fmt.Errorf("turn: epoll_ctl: %w", err)
	}
	p.relays[r.id] = r
	return nil
}

// remove takes r out of the epoll set; r.mu is held.
func (p *poller) remove(r *polledRelay) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.relays[r.id] != r {
		return
	}
	delete(p.relays, r.id)
	if !p.stopped {
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, r.fd, nil)
	}
}

// ReadFrom returns the next datagram for pion. Datagrams for a client on a
// stream are sent to it here as ChannelData when the peer has a channel.
func (r *polledRelay) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		pk, ok := r.slow.get()
		if !ok {
			return 0, nil, net.ErrClosed
		}
		if r.st.forwardChannelData(pk.buf, pk.n, pk.from) {
			r.slow.recycle(pk)
			r.resume()
			continue
		}
		n := copy(p, pk.buf[channelDataHeader:channelDataHeader+pk.n])
		from := pk.from
		r.slow.recycle(pk)
		r.resume()
		return n, net.UDPAddrFromAddrPort(from), nil
	}
}

// resume reads the socket again if the poller paused it and this reader
// has caught up.
func (r *polledRelay) resume() {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.closed {
		r.p.resume(r.slow)
	}
}

// WriteTo sends client data to a peer (Send indications and ChannelData,
// RFC 8656 §10.2 and §12.6) if the policy and the bandwidth cap allow.
func (r *polledRelay) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, ErrPeerDenied
	}
	peer := ua.AddrPort()
	if reason := r.policy.Check(peer); reason != ReasonNone {
		r.st.denied(peer, reason, "Send")
		return 0, ErrPeerDenied
	}
	if !r.st.toPeer.allow(len(p), r.now()) {
		r.m.bandwidthDrop.Inc()
		return len(p), nil
	}
	var dst rawAddr
	if !toRaw(peer, r.family, &dst) {
		return 0, ErrPeerDenied
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return 0, net.ErrClosed
	}
	err := sendto(r.fd, p, &dst)
	for waits := 0; errors.Is(err, unix.EINTR) || (errors.Is(err, unix.EAGAIN) && waits < 3); waits++ {
		waitWritable(r.fd, 10)
		err = sendto(r.fd, p, &dst)
	}
	if err != nil {
		return 0, err
	}
	r.m.relayedBytes[transportUDP][dirToPeer].Add(float64(len(p)))
	r.m.relayedPkts[transportUDP][dirToPeer].Inc()
	return len(p), nil
}

// Close closes the socket and gives the allocation back to the quota.
func (r *polledRelay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.p.remove(r)
	err := unix.Close(r.fd)
	r.mu.Unlock()
	r.slow.close()
	r.st.release()
	return err
}

func (r *polledRelay) LocalAddr() net.Addr              { return r.local }
func (r *polledRelay) SetDeadline(time.Time) error      { return nil }
func (r *polledRelay) SetReadDeadline(time.Time) error  { return nil }
func (r *polledRelay) SetWriteDeadline(time.Time) error { return nil }

// logPollStats logs the relay poller's batch sizes once it has stopped,
// at Debug: a figure for benchmarks (bench/turn -v), not for operators,
// and the server's own "stopped" stays its last Info line.
func (s *Server) logPollStats() {
	st := s.poller.stats
	mean := func(n, calls uint64) float64 {
		if calls == 0 {
			return 0
		}
		return float64(n) / float64(calls)
	}
	s.log.Debug("turn: relay poller stopped", "wakeups", st.wakeups,
		"recvmmsg_calls", st.recvCalls, "datagrams_read", st.recvDgrams,
		"mean_recv_batch", mean(st.recvDgrams, st.recvCalls),
		"sendmmsg_calls", st.sendCalls, "datagrams_sent", st.sendDgrams,
		"mean_send_batch", mean(st.sendDgrams, st.sendCalls),
		"datagrams_per_wakeup", mean(st.recvDgrams, st.wakeups))
}
