//go:build !linux

package turn

import (
	"net"
	"net/netip"
	"time"

	pionturn "github.com/pion/turn/v5"
)

// Off Linux there is no relay poller: relay sockets are Go's, read by one
// goroutine each (relayPacketConn).

type poller struct{}

// rawAddr has no use off Linux.
type rawAddr struct{}

func newPoller(*metrics, func() time.Time, []*packetListener) (*poller, error) { return nil, nil }

func (p *poller) stop() {}

func (p *poller) resume(*slowQueue) {}

func (g *relayGen) allocatePolled(pionturn.AllocateListenerConfig, netip.Addr) (net.PacketConn, net.Addr, error) {
	return nil, nil, ErrClosed
}

func toRaw(netip.AddrPort, int, *rawAddr) bool { return false }

// listenerReader reads a client-facing UDP socket one datagram at a time
// and returns those that take passes on.
type listenerReader struct {
	pc   net.PacketConn
	take func([]byte, netip.AddrPort) bool
	buf  []byte
}

func newListenerReader(pc net.PacketConn, take func([]byte, netip.AddrPort) bool) (*listenerReader, int, int) {
	return &listenerReader{pc: pc, take: take, buf: make([]byte, relayReadSize)}, -1, 0
}

func (r *listenerReader) read() ([]byte, netip.AddrPort, error) {
	for {
		n, addr, err := r.pc.ReadFrom(r.buf)
		if err != nil {
			return nil, netip.AddrPort{}, err
		}
		if from := addrPortOf(addr); r.take(r.buf[:n], from) {
			return r.buf[:n], from, nil
		}
	}
}

// Off Linux a listener is never detached (no relay poller).
func (c *packetListener) writeRaw([]byte, netip.AddrPort) (int, error) { return 0, errUnreachable }
func (c *packetListener) writeRawTo([]byte, *rawAddr) (int, error)     { return 0, errUnreachable }
func (c *packetListener) closeRaw() error                              { return nil }

func (s *Server) logPollStats() {}
