package turn

import (
	"encoding/binary"
	"maps"
	"net"
	"net/netip"
)

// This file keeps Switchboard's view of pion's allocations (found by relay
// port when pion asks for a socket, by 5-tuple once pion reports the
// allocation) and the ChannelData fast path built on it.
//
// ChannelData is the bulk of TURN traffic. pion relays it correctly but
// allocates and formats on every packet; the fast path relays it itself
// from a mirror of pion's channel bindings, kept by pion's
// OnChannelCreated/OnChannelDeleted events. Only packets whose 5-tuple and
// channel pion has bound take it; anything else goes to pion unchanged.
// Peer policy, bandwidth caps and counters apply exactly as on pion's path
// because both go through relayPacketConn.

const (
	channelDataHeader = 4
	// relayReadSize is the largest peer datagram relayed, as in pion
	// (internal/allocation: rtpMTU).
	relayReadSize = 1600
)

// chanTable is one allocation's channel bindings (RFC 8656 §12). It is
// replaced, never modified, so readers need no lock.
type chanTable struct {
	byNum  map[uint16]*net.UDPAddr
	byPeer map[netip.AddrPort]uint16
}

// clientOut is how relay data reaches an allocation's client: a UDP
// listener socket and the client's address, or the client's TCP/TLS stream.
type clientOut struct {
	listener *packetListener
	addrPort netip.AddrPort
	stream   *streamConn
	// For the relay poller (Linux): the listener's file descriptor, or -1,
	// and the client's address in its socket's form.
	lfd int
	raw rawAddr
}

// relayKey identifies a relay socket by transport and port.
type relayKey struct {
	transport int
	port      uint16
}

// tupleKey identifies an allocation by its client-side addresses.
type tupleKey struct {
	client, server netip.AddrPort
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.UDPAddr:
		return v.AddrPort()
	case *net.TCPAddr:
		return v.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func relayTransportOf(a net.Addr) (int, uint16, bool) {
	switch v := a.(type) {
	case *net.UDPAddr:
		return transportUDP, uint16(v.Port), true
	case *net.TCPAddr:
		return transportTCP, uint16(v.Port), true
	}
	return 0, 0, false
}

func (s *Server) rememberRelay(st *allocState) {
	s.allocMu.Lock()
	defer s.allocMu.Unlock()
	s.byRelay[relayKey{st.transport, st.relay.Port()}] = st
}

func (s *Server) forgetRelay(st *allocState) {
	s.allocMu.Lock()
	k := relayKey{st.transport, st.relay.Port()}
	if s.byRelay[k] == st {
		delete(s.byRelay, k)
	}
	s.allocMu.Unlock()
	s.byTuple.Range(func(k, v any) bool {
		if v == st {
			s.byTuple.CompareAndDelete(k, v)
		}
		return true
	})
}

func (s *Server) relayByPort(transport int, port uint16) *allocState {
	s.allocMu.Lock()
	defer s.allocMu.Unlock()
	return s.byRelay[relayKey{transport, port}]
}

func (s *Server) allocByTuple(k tupleKey) *allocState {
	v, ok := s.byTuple.Load(k)
	if !ok {
		return nil
	}
	return v.(*allocState) //nolint:forcetypeassert // only *allocState is stored
}

// onAllocationCreated links pion's allocation (known by its 5-tuple) to
// our state (known by its relay port) and records how to reach the client.
func (s *Server) onAllocationCreated(src, dst net.Addr, _, userID, _ string, relayAddr net.Addr, _ int) {
	t, port, ok := relayTransportOf(relayAddr)
	if !ok {
		return
	}
	key := tupleKey{addrPortOf(src), addrPortOf(dst)}
	st := s.relayByPort(t, port)
	if st == nil {
		return
	}
	client := key.client.String()
	st.client.Store(&client)
	if l, ok := s.udpListeners[key.server]; ok {
		if ua, ok := src.(*net.UDPAddr); ok {
			out := &clientOut{listener: l, addrPort: ua.AddrPort(), lfd: -1}
			if l.fd >= 0 && toRaw(out.addrPort, l.family, &out.raw) {
				out.lfd = l.fd
			}
			st.out.Store(out)
		}
	} else if v, ok := s.streams.Load(key); ok {
		st.out.Store(&clientOut{stream: v.(*streamConn), lfd: -1}) //nolint:forcetypeassert // only *streamConn is stored
	}
	s.byTuple.Store(key, st)
	s.log.Debug("turn: allocation created", "user", userID, "client", client, "relay", relayAddr.String())
}

func (s *Server) onAllocationDeleted(src, dst net.Addr, _, userID, _ string) {
	key := tupleKey{addrPortOf(src), addrPortOf(dst)}
	s.byTuple.Delete(key)
	s.log.Debug("turn: allocation deleted", "user", userID, "client", key.client.String())
}

// onChannelCreated and onChannelDeleted mirror pion's channel bindings.
// pion calls them with its own locks held; they touch only our state.
func (s *Server) onChannelCreated(src, dst net.Addr, _, _, _ string, _, peer net.Addr, number uint16) {
	st := s.allocByTuple(tupleKey{addrPortOf(src), addrPortOf(dst)})
	ua, ok := peer.(*net.UDPAddr)
	if st == nil || !ok {
		return
	}
	st.updateChannels(func(t *chanTable) {
		t.byNum[number] = &net.UDPAddr{IP: append(net.IP(nil), ua.IP...), Port: ua.Port}
		t.byPeer[canonicalAddrPort(ua.AddrPort())] = number
	})
}

func (s *Server) onChannelDeleted(src, dst net.Addr, _, _, _ string, _, peer net.Addr, number uint16) {
	st := s.allocByTuple(tupleKey{addrPortOf(src), addrPortOf(dst)})
	if st == nil {
		return
	}
	st.updateChannels(func(t *chanTable) {
		delete(t.byNum, number)
		delete(t.byPeer, canonicalAddrPort(addrPortOf(peer)))
	})
}

func canonicalAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (a *allocState) updateChannels(change func(*chanTable)) {
	a.chanMu.Lock()
	defer a.chanMu.Unlock()
	next := &chanTable{byNum: map[uint16]*net.UDPAddr{}, byPeer: map[netip.AddrPort]uint16{}}
	if cur := a.chans.Load(); cur != nil {
		next.byNum = maps.Clone(cur.byNum)
		next.byPeer = maps.Clone(cur.byPeer)
	}
	change(next)
	a.chans.Store(next)
}

// relayChannelData relays a ChannelData message b (RFC 8656 §12.4) from the
// client at src, received on the server address local, if pion has bound
// its channel for that 5-tuple. It reports whether it took the message.
func (s *Server) relayChannelData(b []byte, src, local netip.AddrPort) bool {
	st := s.allocByTuple(tupleKey{src, local})
	if st == nil || st.udpRelay == nil {
		return false
	}
	t := st.chans.Load()
	if t == nil {
		return false
	}
	peer, ok := t.byNum[binary.BigEndian.Uint16(b[0:2])]
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if !ok || channelDataHeader+n > len(b) {
		return false
	}
	_, _ = st.udpRelay.WriteTo(b[channelDataHeader:channelDataHeader+n], peer)
	return true
}

// forwardChannelData sends the n bytes at buf[4:] that arrived from peer to
// the client as ChannelData, if the peer is bound to a channel (RFC 8656
// §12.7). buf has room for the header in front and padding behind.
func (a *allocState) forwardChannelData(buf []byte, n int, peer netip.AddrPort) bool {
	t := a.chans.Load()
	out := a.out.Load()
	if t == nil || out == nil {
		return false
	}
	number, ok := t.byPeer[canonicalAddrPort(peer)]
	if !ok {
		return false
	}
	putChannelDataHeader(buf, number, n)
	total := channelDataHeader + n
	if out.stream != nil {
		for total%4 != 0 { // streams carry ChannelData padded (RFC 8656 §12.5)
			buf[total] = 0
			total++
		}
		_, _ = out.stream.Conn.Write(buf[:total])
		return true
	}
	if out.lfd >= 0 && out.listener.detached {
		_, _ = out.listener.writeRawTo(buf[:total], &out.raw)
		return true
	}
	_, _ = out.listener.write(buf[:total], out.addrPort)
	return true
}

// putChannelDataHeader writes the ChannelData header (RFC 8656 §12.4) for
// n bytes of data on channel number into buf[0:4].
func putChannelDataHeader(buf []byte, number uint16, n int) {
	binary.BigEndian.PutUint16(buf[0:2], number)
	binary.BigEndian.PutUint16(buf[2:4], uint16(n))
}

// denied records a refusal seen by the request inspector.
func (s *Server) denied(client, server, peer netip.AddrPort, r Reason, what string) {
	if st := s.allocByTuple(tupleKey{client, server}); st != nil {
		st.denied(peer, r, what)
		return
	}
	s.metrics.denials[r].Inc()
	s.log.Debug("turn: peer refused by policy (no allocation)", "reason", r.String(), "peer", peer.String(),
		"request", what, "client", client.String())
}
