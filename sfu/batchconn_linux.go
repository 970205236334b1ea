//go:build linux

package sfu

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSlots is how many datagrams one sendmmsg(2) carries at most.
const batchSlots = 64

// batchConn wraps the SFU's UDP socket for pion's ICE UDP mux. While a
// fan-out is open (begin ... end: a publisher's packet being forwarded to
// its subscribers) the datagrams written are queued, and end sends them
// with one sendmmsg(2) instead of one sendto(2) each. Outside a fan-out,
// and for whatever else is written meanwhile (ICE, DTLS, RTCP), writes
// queue the same way and leave with the fan-out; with no fan-out open they
// go straight out. It implements ice.AddrPortReaderWriter, which pion's
// mux prefers to net.PacketConn's methods.
type batchConn struct {
	*net.UDPConn
	rc    syscall.RawConn
	inet6 bool

	// mu guards the fields below; it is taken inside pion's write path
	// and taken last.
	mu    sync.Mutex
	open  int // fan-outs open
	n     int // datagrams queued
	hdrs  [batchSlots]mmsghdr
	iovs  [batchSlots]unix.Iovec
	names [batchSlots]unix.RawSockaddrInet6
	bufs  [batchSlots][1500]byte
	// off, sent and serr carry a flush's progress through writeFn.
	off, sent int
	serr      error
	writeFn   func(fd uintptr) bool
}

// mmsghdr is the kernel's struct mmsghdr: a msghdr and the byte count
// sendmmsg fills in.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [unsafe.Sizeof(uintptr(0)) - 4]byte
}

// newBatchConn wraps pc, or returns nil if pc is no UDP socket of the kernel
// (a simulated network in tests).
func newBatchConn(pc net.PacketConn) *batchConn {
	u, ok := pc.(*net.UDPConn)
	if !ok {
		return nil
	}
	rc, err := u.SyscallConn()
	if err != nil {
		return nil
	}
	la, ok := u.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil
	}
	c := &batchConn{UDPConn: u, rc: rc, inet6: la.IP.To4() == nil || la.IP.IsUnspecified() && isDualStack(u)}
	c.writeFn = c.write
	return c
}

// isDualStack reports whether an unspecified-address socket is IPv6 (it
// then takes IPv4 peers as mapped addresses).
func isDualStack(u *net.UDPConn) bool {
	sa, err := getsockname(u)
	if err != nil {
		return false
	}
	_, ok := sa.(*unix.SockaddrInet6)
	return ok
}

func getsockname(u *net.UDPConn) (unix.Sockaddr, error) {
	rc, err := u.SyscallConn()
	if err != nil {
		return nil, err
	}
	var sa unix.Sockaddr
	var serr error
	if err := rc.Control(func(fd uintptr) { sa, serr = unix.Getsockname(int(fd)) }); err != nil {
		return nil, err
	}
	return sa, serr
}

// ReadFromAddrPort implements ice.AddrPortReaderWriter.
func (c *batchConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.UDPConn.ReadFromUDPAddrPort(b)
}

// WriteToAddrPort implements ice.AddrPortReaderWriter: queued while a
// fan-out is open, else sent at once.
func (c *batchConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	c.mu.Lock()
	if c.open == 0 || len(b) > len(c.bufs[0]) {
		c.mu.Unlock()
		return c.UDPConn.WriteToUDPAddrPort(b, addr)
	}
	if c.n == batchSlots {
		c.flushLocked()
	}
	i := c.n
	n := copy(c.bufs[i][:], b)
	if !c.setName(i, addr) {
		c.mu.Unlock()
		return c.UDPConn.WriteToUDPAddrPort(b, addr)
	}
	c.iovs[i].Base = &c.bufs[i][0]
	c.iovs[i].SetLen(n)
	h := &c.hdrs[i].hdr
	h.Name = (*byte)(unsafe.Pointer(&c.names[i]))
	h.Iov = &c.iovs[i]
	h.SetIovlen(1)
	h.Control, h.Controllen, h.Flags = nil, 0, 0
	c.n++
	c.mu.Unlock()
	return n, nil
}

// WriteTo implements net.PacketConn for writers that use net.Addr.
func (c *batchConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok {
		return c.WriteToAddrPort(b, ua.AddrPort())
	}
	return c.UDPConn.WriteTo(b, addr)
}

// setName writes addr in slot i's address in the socket's family.
func (c *batchConn) setName(i int, addr netip.AddrPort) bool {
	ip := addr.Addr()
	h := &c.hdrs[i].hdr
	if !c.inet6 {
		if !ip.Unmap().Is4() {
			return false
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&c.names[i]))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.Unmap().As4()}
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(addr.Port()>>8), byte(addr.Port())
		h.Namelen = unix.SizeofSockaddrInet4
		return true
	}
	sa := &c.names[i]
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(addr.Port()>>8), byte(addr.Port())
	h.Namelen = unix.SizeofSockaddrInet6
	return true
}

// begin opens a fan-out: writes queue until the last open one ends.
func (c *batchConn) begin() {
	c.mu.Lock()
	c.open++
	c.mu.Unlock()
}

// end closes a fan-out and sends what is queued once none is open.
func (c *batchConn) end() {
	c.mu.Lock()
	c.open--
	if c.open == 0 && c.n > 0 {
		c.flushLocked()
	}
	c.mu.Unlock()
}

// flushLocked sends the queued datagrams, waiting (as a blocking write
// would) while the socket buffer is full. A datagram the kernel refuses is
// dropped, as a failed write would be.
func (c *batchConn) flushLocked() {
	for c.off = 0; c.off < c.n; {
		if err := c.rc.Write(c.writeFn); err != nil {
			break // the socket is closed
		}
		switch {
		case errors.Is(c.serr, unix.EINTR):
		case c.serr != nil || c.sent <= 0:
			c.off++ // skip the datagram that failed
		default:
			c.off += c.sent
		}
	}
	c.n = 0
}

// write is one sendmmsg of the queued datagrams from c.off, for
// syscall.RawConn.Write (c.writeFn, made once so that a flush does not
// allocate a closure); false asks to wait until the socket is writable.
func (c *batchConn) write(fd uintptr) bool {
	c.sent, c.serr = sendmmsg(int(fd), c.hdrs[c.off:c.n])
	return !errors.Is(c.serr, unix.EAGAIN)
}

func sendmmsg(fd int, hdrs []mmsghdr) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])),
		uintptr(len(hdrs)), 0, 0, 0)
	if errno != 0 {
		return int(n), errno
	}
	return int(n), nil
}
