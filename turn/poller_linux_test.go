//go:build linux

package turn

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestPollerRelay relays ChannelData both ways through a running server
// over real UDP on loopback, with the relay socket served by the poller,
// and checks that every datagram arrives (sent in windows the receivers can
// keep up with) and that closing the allocation takes the socket out of the
// poller.
func TestPollerRelay(t *testing.T) {
	checkLeaks(t)
	h := startHarness(t, nil)
	if h.srv.poller == nil {
		t.Fatal("no relay poller on Linux")
	}
	peer := listenUDPPeer(t, "127.0.0.1:0")
	user, pass := restCreds("@poll:switchboard.test")
	c := dialRaw(t, h, false, user, pass)
	relayed := c.allocate()
	st := h.srv.relayByPort(transportUDP, uint16(relayed.Port))
	if st == nil {
		t.Fatal("no state for the relay port")
	}
	if _, ok := st.udpRelay.(*polledRelay); !ok {
		t.Fatalf("relay socket is %T, want *polledRelay", st.udpRelay)
	}
	if r := c.request(stun.MethodChannelBind, channelNumber(0x4002), peerAddr(peer.addr())); r.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("ChannelBind: %d", errorCode(r))
	}

	const total, window = 600, 50
	payload := func(i int) []byte {
		b := make([]byte, 200)
		binary.BigEndian.PutUint32(b, uint32(i))
		return b
	}
	// Client to peer.
	for start := 0; start < total; start += window {
		for i := start; i < start+window; i++ {
			c.send(channelData(0x4002, payload(i), false))
		}
		for i := start; i < start+window; i++ {
			select {
			case d := <-peer.got:
				<-peer.from
				if got := int(binary.BigEndian.Uint32(d)); got != i {
					t.Fatalf("peer got datagram %d, want %d", got, i)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("peer: datagram %d never arrived", i)
			}
		}
	}
	// Peer to client, all through the poller's sendmmsg.
	for start := 0; start < total; start += window {
		for i := start; i < start+window; i++ {
			if _, err := peer.conn.WriteToUDP(payload(i), relayed); err != nil {
				t.Fatal(err)
			}
		}
		for i := start; i < start+window; i++ {
			select {
			case d := <-c.data:
				if got := int(binary.BigEndian.Uint32(d)); got != i {
					t.Fatalf("client got datagram %d, want %d", got, i)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("client: datagram %d never arrived", i)
			}
		}
	}
	if got := h.metric("switchboard_turn_relayed_packets_total", "transport", "udp", "direction", "to_client"); got < total {
		t.Fatalf("to_client packets = %v, want ≥ %d", got, total)
	}

	if r := c.request(stun.MethodRefresh, lifetime(0)); r.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("Refresh 0: %d", errorCode(r))
	}
	testkit.Eventually(t, 5*time.Second, "relay socket leaves the poller", func() bool {
		h.srv.poller.mu.Lock()
		defer h.srv.poller.mu.Unlock()
		return len(h.srv.poller.relays) == 0 && h.srv.AllocationCount() == 0
	})
}

// pollerRig is a poller whose loop the test drives by hand, one relay
// socket on it, a "listener" socket, a client and a peer, all on loopback.
type pollerRig struct {
	srv                    *Server
	p                      *poller
	r                      *polledRelay
	listener, client, peer *net.UDPConn
	relayAddr, clientAddr  netip.AddrPort
	src, local             netip.AddrPort
}

func newPollerRig(t testing.TB) *pollerRig {
	t.Helper()
	srv := fuzzServer(t)
	srv.cfg.BandwidthBytesPerSec = 1 << 40
	p, err := buildPoller(srv.metrics, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.closeFDs)
	srv.poller = p
	udp := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetReadBuffer(8 << 20); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	rig := &pollerRig{srv: srv, p: p, listener: udp(), client: udp(), peer: udp()}
	fd, err := openRelaySocket(unix.AF_INET, netip.MustParseAddr("127.0.0.1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(sa.(*unix.SockaddrInet4).Port)
	rig.relayAddr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	now := time.Now()
	st := &allocState{s: srv, transport: transportUDP, relay: rig.relayAddr,
		toPeer: newBucket(1<<40, 1<<40, now), toClient: newBucket(1<<40, 1<<40, now)}
	srv.active.Add(1)
	srv.quotas.acquire("rig")
	st.user = "rig"
	rig.r = &polledRelay{p: p, fd: fd, family: unix.AF_INET, st: st, m: srv.metrics, policy: srv.policy, now: time.Now,
		local: net.UDPAddrFromAddrPort(rig.relayAddr),
		slow:  newSlowQueue(slowQueueLen)}
	st.udpRelay = rig.r
	if err := p.add(rig.r); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rig.r.Close() })

	_, lfd, fam := newListenerReader(rig.listener, nil)
	rig.clientAddr = rig.client.LocalAddr().(*net.UDPAddr).AddrPort()
	out := &clientOut{lfd: lfd, addrPort: rig.clientAddr}
	if !toRaw(rig.clientAddr, fam, &out.raw) {
		t.Fatal("toRaw refused a loopback address")
	}
	st.out.Store(out)
	peerAddr := rig.peer.LocalAddr().(*net.UDPAddr)
	st.updateChannels(func(ct *chanTable) {
		ct.byNum[0x4000] = peerAddr
		ct.byPeer[peerAddr.AddrPort()] = 0x4000
	})
	rig.src = rig.clientAddr
	rig.local = rig.listener.LocalAddr().(*net.UDPAddr).AddrPort()
	srv.byTuple.Store(tupleKey{rig.src, rig.local}, st)
	return rig
}

// toClient sends one datagram from the peer to the relay, runs the
// poller's read and send by hand and reads the ChannelData at the client.
func (rig *pollerRig) toClient(t testing.TB, payload, buf []byte) {
	if _, err := rig.peer.WriteToUDPAddrPort(payload, rig.relayAddr); err != nil {
		t.Fatal(err)
	}
	for rig.p.used == 0 { // loopback delivers within sendto; this loop is a formality
		rig.p.drain(rig.r, time.Now())
	}
	rig.p.flush()
	n, _, err := rig.client.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != channelDataHeader+len(payload) || binary.BigEndian.Uint16(buf) != 0x4000 {
		t.Fatalf("client got %d bytes on channel %#x", n, binary.BigEndian.Uint16(buf))
	}
}

// toPeer relays one ChannelData message from the client to the peer
// through the fast path and reads it at the peer.
func (rig *pollerRig) toPeer(t testing.TB, msg, buf []byte) {
	if !rig.srv.relayChannelData(msg, rig.src, rig.local) {
		t.Fatal("not relayed")
	}
	n, from, err := rig.peer.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(msg)-channelDataHeader || from != rig.relayAddr {
		t.Fatalf("peer got %d bytes from %v", n, from)
	}
}

// TestRelayPathAllocs fails if relaying a datagram allocates, in either
// direction: peer to client through the poller (recvmmsg, channel lookup,
// bucket, counters, sendmmsg), client to peer through the listener's
// batched read and the fast path (sendto on the relay socket).
func TestRelayPathAllocs(t *testing.T) {
	rig := newPollerRig(t)
	payload := make([]byte, 1000)
	buf := make([]byte, 2048)
	if a := testing.AllocsPerRun(200, func() { rig.toClient(t, payload, buf) }); a != 0 {
		t.Errorf("peer to client: %v allocations per datagram, want 0", a)
	}
	msg := channelData(0x4000, payload, false)
	if a := testing.AllocsPerRun(200, func() { rig.toPeer(t, msg, buf) }); a != 0 {
		t.Errorf("client to peer: %v allocations per datagram, want 0", a)
	}

	// The listener's batched read with the fast path inside it; take
	// passes every datagram on so that read returns.
	take := func(b []byte, src netip.AddrPort) bool {
		return rig.srv.relayChannelData(b, src, rig.local)
	}
	lr, _, _ := newListenerReader(rig.listener, take)
	if a := testing.AllocsPerRun(200, func() {
		if _, err := rig.client.WriteToUDPAddrPort(msg, rig.local); err != nil {
			t.Fatal(err)
		}
		b, src, err := lr.read()
		if err != nil || len(b) != len(msg) || src != rig.clientAddr {
			t.Fatalf("listener read %d bytes from %v: %v", len(b), src, err)
		}
		if n, _, err := rig.peer.ReadFromUDPAddrPort(buf); err != nil || n != len(payload) {
			t.Fatalf("peer read %d bytes: %v", n, err)
		}
	}); a != 0 {
		t.Errorf("listener read and fast path: %v allocations per datagram, want 0", a)
	}
}

// TestPolledRelaySlowPath: datagrams from a peer without a channel go to
// pion's goroutine through ReadFrom, with the sender's address; Close ends
// ReadFrom.
func TestPolledRelaySlowPath(t *testing.T) {
	rig := newPollerRig(t)
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.WriteToUDPAddrPort([]byte("no channel"), rig.relayAddr); err != nil {
		t.Fatal(err)
	}
	for rig.p.used == 0 {
		rig.p.drain(rig.r, time.Now())
	}
	rig.p.flush()
	buf := make([]byte, 100)
	n, from, err := rig.r.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "no channel" || from.String() != other.LocalAddr().String() {
		t.Fatalf("ReadFrom = %q from %v, %v", buf[:n], from, err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := rig.r.ReadFrom(buf)
		done <- err
	}()
	if err := rig.r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("ReadFrom after Close returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrom did not return after Close")
	}
	if _, err := rig.r.WriteTo([]byte("x"), other.LocalAddr()); err == nil {
		t.Fatal("WriteTo after Close succeeded")
	}
}

// BenchmarkPollerToClient is the peer-to-client path per datagram: the
// peer's sendto, the poller's recvmmsg and sendmmsg of one datagram, the
// client's read.
func BenchmarkPollerToClient(b *testing.B) {
	rig := newPollerRig(b)
	payload := make([]byte, 1000)
	buf := make([]byte, 2048)
	b.ReportAllocs()
	for b.Loop() {
		rig.toClient(b, payload, buf)
	}
}

// BenchmarkPollerToClientBatch is the same with 32 datagrams per poller
// round, as under load: the system calls of the relay are shared.
func BenchmarkPollerToClientBatch(b *testing.B) {
	rig := newPollerRig(b)
	payload := make([]byte, 1000)
	buf := make([]byte, 2048)
	const batch = 32
	b.ReportAllocs()
	for b.Loop() {
		for range batch {
			if _, err := rig.peer.WriteToUDPAddrPort(payload, rig.relayAddr); err != nil {
				b.Fatal(err)
			}
		}
		for rig.p.used < batch {
			rig.p.drain(rig.r, time.Now())
		}
		rig.p.flush()
		for range batch {
			if _, _, err := rig.client.ReadFromUDPAddrPort(buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/datagram")
}

// TestPolledRelayBackPressure: when pion's goroutine falls a whole queue
// behind, the poller stops reading the relay socket instead of dropping,
// and reading from the queue resumes it: every datagram arrives.
func TestPolledRelayBackPressure(t *testing.T) {
	rig := newPollerRig(t)
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	const total = slowQueueLen + 100
	for i := range total {
		b := make([]byte, 8)
		binary.BigEndian.PutUint32(b, uint32(i))
		if _, err := other.WriteToUDPAddrPort(b, rig.relayAddr); err != nil {
			t.Fatal(err)
		}
	}
	for range 8 { // more rounds than needed: the queue must stop at its size
		rig.p.drain(rig.r, time.Now())
		rig.p.flush()
	}
	if got := len(rig.r.slow.queue); got != slowQueueLen {
		t.Fatalf("queue holds %d, want %d", got, slowQueueLen)
	}
	if !rig.r.slow.paused {
		t.Fatal("relay socket not paused with a full queue")
	}
	buf := make([]byte, 100)
	for i := range total {
		if len(rig.r.slow.queue) == 0 {
			rig.p.drain(rig.r, time.Now())
			rig.p.flush()
		}
		n, _, err := rig.r.ReadFrom(buf)
		if err != nil || n != 8 || int(binary.BigEndian.Uint32(buf)) != i {
			t.Fatalf("datagram %d: got %d bytes (%v), number %d", i, n, err, binary.BigEndian.Uint32(buf))
		}
	}
	if rig.r.slow.paused {
		t.Fatal("relay socket still paused with an empty queue")
	}
}

// TestPollerOwnsListener: with the relay poller, the UDP client listener
// leaves Go's netpoller (its net.PacketConn is closed, the socket lives on
// through a duplicate descriptor), still carries pion's answers and the
// relay both ways, and is closed by Close: its port is free afterwards.
// The poller's counts say how many datagrams each wake-up served.
func TestPollerOwnsListener(t *testing.T) {
	checkLeaks(t)
	h := startHarness(t, nil)
	pl := h.srv.udpListeners[addrPortOf(h.udpAddr)]
	if pl == nil || !pl.detached {
		t.Fatal("the UDP listener was not taken over by the relay poller")
	}
	rc, err := pl.PacketConn.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(uintptr) {}); err == nil {
		t.Fatal("the listener's net.PacketConn is still open (and in Go's netpoller)")
	}

	peer := listenUDPPeer(t, "127.0.0.1:0")
	user, pass := restCreds("@own:switchboard.test")
	c := dialRaw(t, h, false, user, pass)
	relayed := c.allocate() // pion's answers leave through the duplicate
	if r := c.request(stun.MethodChannelBind, channelNumber(0x4003), peerAddr(peer.addr())); r.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("ChannelBind: %d", errorCode(r))
	}
	const total = 100
	for i := range total {
		c.send(channelData(0x4003, []byte{byte(i)}, false))
		select {
		case d := <-peer.got:
			<-peer.from
			if d[0] != byte(i) {
				t.Fatalf("peer got datagram %d, want %d", d[0], i)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("peer: datagram %d never arrived", i)
		}
		if _, err := peer.conn.WriteToUDP([]byte{byte(i)}, relayed); err != nil {
			t.Fatal(err)
		}
		select {
		case d := <-c.data:
			if d[0] != byte(i) {
				t.Fatalf("client got datagram %d, want %d", d[0], i)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("client: datagram %d never arrived", i)
		}
	}
	c.close()

	if err := h.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := pl.writeRaw([]byte("x"), peer.addr().AddrPort()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v, want net.ErrClosed", err)
	}
	again, err := net.ListenUDP("udp", h.udpAddr)
	if err != nil {
		t.Fatalf("the listener's port is still held after Close: %v", err)
	}
	_ = again.Close()

	st := h.srv.poller.stats // the loop has stopped: no race
	t.Logf("poller: %d wake-ups, %d datagrams read in %d recvmmsg, %d sent in %d sendmmsg",
		st.wakeups, st.recvDgrams, st.recvCalls, st.sendDgrams, st.sendCalls)
	if st.recvDgrams < 2*total || st.sendDgrams < total || st.wakeups == 0 || st.wakeups > st.recvDgrams+1 {
		t.Fatalf("poller counts %+v: want ≥ %d datagrams read, ≥ %d sent, at most one wake-up per datagram", st, 2*total, total)
	}
}
