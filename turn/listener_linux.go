//go:build linux

package turn

import (
	"errors"
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
// with ReadFrom.
type listenerReader struct {
	pc  net.PacketConn
	buf []byte // plain ReadFrom only

	rc         syscall.RawConn
	b          *mmsgBatch
	next, have int
	err        error
	readFn     func(fd uintptr) bool // r.recv, bound once
}

// newListenerReader returns the reader, and the socket's descriptor and
// address family for the relay poller's sends (-1 and 0 if it has none).
func newListenerReader(pc net.PacketConn) (*listenerReader, int, int) {
	r := &listenerReader{pc: pc}
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
	n, err := recvmmsg(int(fd), r.b.hdrs)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNREFUSED) {
		return false // wait for the socket to be readable again
	}
	r.have, r.err = n, err
	return true
}

// read returns the next datagram and its sender. The bytes are valid until
// the next call.
func (r *listenerReader) read() ([]byte, netip.AddrPort, error) {
	if r.rc == nil {
		n, addr, err := r.pc.ReadFrom(r.buf)
		return r.buf[:n], addrPortOf(addr), err
	}
	for r.next >= r.have {
		r.b.armRecv(0, 0)
		r.next, r.have, r.err = 0, 0, nil
		if err := r.rc.Read(r.readFn); err != nil {
			return nil, netip.AddrPort{}, err
		}
		if r.err != nil {
			return nil, netip.AddrPort{}, r.err
		}
	}
	i := r.next
	r.next++
	return r.b.bufs[i][:r.b.hdrs[i].n], addrFromRaw(&r.b.names[i]), nil
}
