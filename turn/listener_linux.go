//go:build linux

package turn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenerBatch is how many datagrams one recvmmsg may return on a
// client-facing UDP socket (clients' packets arrive in bursts).
const listenerBatch = 32

// listenerReader reads a client-facing UDP socket: on a *net.UDPConn with
// recvmmsg(2) through Go's netpoller (syscall.RawConn.Read), up to
// listenerBatch datagrams per system call, without allocating; otherwise
// with ReadFrom. Datagrams are offered to take (the ChannelData fast path
// and the request inspector) inside the Read, and next returns only those
// that take passes on, for pion: ChannelData costs no trip through pion's
// read loop, and a short batch (the socket is empty) parks the reader at
// once, without a read that finds nothing.
type listenerReader struct {
	pc   net.PacketConn
	take func([]byte, netip.AddrPort) bool
	buf  []byte // plain ReadFrom only

	rc         syscall.RawConn
	b          *mmsgBatch
	next, have int
	drained    bool // the last recvmmsg emptied the socket, in this Read
	err        error
	pass       []byte
	passFrom   netip.AddrPort
	readFn     func(fd uintptr) bool // r.recv, bound once
}

// newListenerReader returns the reader, and the socket's descriptor and
// address family for the relay poller's sends (-1 and 0 if it has none).
func newListenerReader(pc net.PacketConn, take func([]byte, netip.AddrPort) bool) (*listenerReader, int, int) {
	r := &listenerReader{pc: pc, take: take}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		r.buf = make([]byte, relayReadSize)
		return r, -1, 0
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		r.buf = make([]byte, relayReadSize)
		return r, -1, 0
	}
	fd := -1
	_ = rc.Control(func(s uintptr) { fd = int(s) })
	r.rc = rc
	r.b = newMmsgBatch(listenerBatch, relayReadSize)
	r.readFn = r.recv
	return r, fd, socketFamily(fd)
}

func (r *listenerReader) recv(fd uintptr) bool {
	for {
		for r.next < r.have {
			i := r.next
			r.next++
			b, from := r.b.bufs[i][:r.b.hdrs[i].n], addrFromRaw(&r.b.names[i])
			if r.take(b, from) {
				r.pass, r.passFrom = b, from
				return true
			}
		}
		if r.drained {
			r.drained = false
			return false // wait: a datagram from now on wakes this Read
		}
		r.b.armRecv(0, 0)
		n, err := recvmmsg(int(fd), r.b.hdrs)
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.ECONNREFUSED):
			return false
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			r.err = err
			return true
		}
		r.next, r.have = 0, n
		r.drained = n < len(r.b.hdrs)
	}
}

// next returns the next datagram that take passes on, and its sender. The
// bytes are valid until the next call.
func (r *listenerReader) read() ([]byte, netip.AddrPort, error) {
	if r.rc == nil {
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
	// A new Read forgets readiness seen before it: look at the socket
	// before waiting.
	r.drained = false
	r.err = nil
	if err := r.rc.Read(r.readFn); err != nil {
		return nil, netip.AddrPort{}, err
	}
	if r.err != nil {
		return nil, netip.AddrPort{}, r.err
	}
	return r.pass, r.passFrom, nil
}

// detach hands the listener's socket to the relay poller's epoll set
// (epfd, as id) and takes it out of Go's netpoller: it keeps a duplicate of
// the descriptor, registers that, and closes the net.PacketConn, whose
// close removes the socket from Go's epoll set before closing its own
// descriptor; the socket stays open through the duplicate. Go registers
// sockets edge triggered for input and output, so a listener left there
// wakes the netpoller's thread for every datagram in and every send that
// frees buffer space, with no goroutine waiting. From here on writes go
// through writeRaw and Close closes the duplicate. On an error nothing has
// changed.
func (c *packetListener) detach(epfd int, id uint32) error {
	nfd, err := unix.FcntlInt(uintptr(c.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("turn: dup: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(id)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, nfd, &ev); err != nil {
		_ = unix.Close(nfd)
		return fmt.Errorf("turn: epoll_ctl: %w", err)
	}
	_ = c.PacketConn.Close()
	c.fd = nfd
	c.detached = true
	return nil
}

// writeRaw sends p to dst on a detached listener, waiting briefly when
// the socket's buffer is full.
func (c *packetListener) writeRaw(p []byte, dst netip.AddrPort) (int, error) {
	var ra rawAddr
	if !toRaw(dst, c.family, &ra) {
		return 0, errUnreachable
	}
	return c.writeRawTo(p, &ra)
}

// writeRawTo is writeRaw for an address already in the kernel's form.
func (c *packetListener) writeRawTo(p []byte, ra *rawAddr) (int, error) {
	c.rawMu.RLock()
	defer c.rawMu.RUnlock()
	if c.rawClosed {
		return 0, net.ErrClosed
	}
	err := sendto(c.fd, p, ra)
	for waits := 0; errors.Is(err, unix.EINTR) || (errors.Is(err, unix.EAGAIN) && waits < 3); waits++ {
		waitWritable(c.fd, 10)
		err = sendto(c.fd, p, ra)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// closeRaw closes a detached listener's descriptor once no write uses it.
func (c *packetListener) closeRaw() error {
	c.rawMu.Lock()
	defer c.rawMu.Unlock()
	if c.rawClosed {
		return net.ErrClosed
	}
	c.rawClosed = true
	return unix.Close(c.fd)
}
