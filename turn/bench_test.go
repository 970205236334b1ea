package turn

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkInspectChannelData is the per-packet cost of the inspector's
// ChannelData check (the common case on a client socket).
func BenchmarkInspectChannelData(b *testing.B) {
	srv := fuzzServer(b)
	msg := channelData(0x4000, make([]byte, 1000), false)
	src := netip.MustParseAddrPort("127.0.0.1:5000")
	local := netip.MustParseAddrPort("127.0.0.1:3478")
	b.ReportAllocs()
	for b.Loop() {
		srv.inspectInbound(msg, src, local)
	}
}

// BenchmarkObserveOutbound is the per-packet cost of watching pion's
// writes to clients for nonces.
func BenchmarkObserveOutbound(b *testing.B) {
	srv := fuzzServer(b)
	data := sendIndication(&net.UDPAddr{IP: net.IPv4(8, 8, 8, 8), Port: 1}, make([]byte, 1000))
	data[1] = 0x17 // a Data indication, as pion sends them
	b.ReportAllocs()
	for b.Loop() {
		srv.observeOutbound(data)
	}
}

// BenchmarkRelayChannelData is the client-to-peer fast path: 5-tuple and
// channel lookup, peer policy, bandwidth bucket, counters and the sendto
// on a loopback socket.
func BenchmarkRelayChannelData(b *testing.B) {
	srv := fuzzServer(b)
	srv.cfg.BandwidthBytesPerSec = 1 << 40
	relaySock, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer relaySock.Close()
	sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	if err := sink.(*net.UDPConn).SetReadBuffer(64 << 20); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	st := &allocState{s: srv, toPeer: newBucket(1<<40, 1<<40, now), toClient: newBucket(1<<40, 1<<40, now)}
	st.udpRelay = &relayPacketConn{PacketConn: relaySock, st: st, m: srv.metrics, policy: srv.policy, now: time.Now}
	st.updateChannels(func(t *chanTable) { t.byNum[0x4000] = sink.LocalAddr().(*net.UDPAddr) })
	src := netip.MustParseAddrPort("127.0.0.1:5000")
	local := netip.MustParseAddrPort("127.0.0.1:3478")
	srv.byTuple.Store(tupleKey{src, local}, st)
	msg := channelData(0x4000, make([]byte, 200), false)
	b.ReportAllocs()
	for b.Loop() {
		if !srv.relayChannelData(msg, src, local) {
			b.Fatal("not relayed")
		}
	}
}
