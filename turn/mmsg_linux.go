//go:build linux

package turn

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is the thin system-call layer under the relay poller
// (poller_linux.go) and the client listener's batched reads: recvmmsg(2)
// and sendmmsg(2) over slots whose headers, iovecs and address buffers are
// allocated once, and socket addresses converted without allocating.

// mmsghdr is struct mmsghdr (recvmmsg(2)): a msghdr and the byte count the
// kernel fills in, padded to the pointer size.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [unsafe.Sizeof(uintptr(0)) - 4]byte
}

// rawAddr is a socket address in the kernel's form, big enough for IPv6.
type rawAddr struct {
	sa  unix.RawSockaddrInet6
	len uint32 // 0: none
}

// mmsgBatch is a fixed set of datagram slots. Slot i reads into or sends
// from bufs[i]; for receiving, names[i] takes the sender's address.
type mmsgBatch struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	bufs  [][]byte
}

func newMmsgBatch(slots, size int) *mmsgBatch {
	b := &mmsgBatch{
		hdrs:  make([]mmsghdr, slots),
		iovs:  make([]unix.Iovec, slots),
		names: make([]unix.RawSockaddrInet6, slots),
		bufs:  make([][]byte, slots),
	}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, size)
	}
	return b
}

// armRecv sets slots [from, len) to receive into bufs[i][off:].
func (b *mmsgBatch) armRecv(from, off int) {
	for i := from; i < len(b.hdrs); i++ {
		buf := b.bufs[i][off:]
		b.iovs[i].Base = &buf[0]
		b.iovs[i].SetLen(len(buf))
		h := &b.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Namelen = uint32(unsafe.Sizeof(b.names[i]))
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		h.Control, h.Controllen, h.Flags = nil, 0, 0
		b.hdrs[i].n = 0
	}
}

// armSend sets slot i to send bufs[i][off:off+n] to dst.
func (b *mmsgBatch) armSend(i, off, n int, dst *rawAddr) {
	b.iovs[i].Base = &b.bufs[i][off]
	b.iovs[i].SetLen(n)
	h := &b.hdrs[i].hdr
	h.Name = (*byte)(unsafe.Pointer(&dst.sa))
	h.Namelen = dst.len
	h.Iov = &b.iovs[i]
	h.SetIovlen(1)
	h.Control, h.Controllen, h.Flags = nil, 0, 0
}

// recvmmsg reads up to len(hdrs) datagrams without blocking.
func recvmmsg(fd int, hdrs []mmsghdr) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])),
		uintptr(len(hdrs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// sendmmsg sends the datagrams of hdrs without blocking and returns how
// many went.
func sendmmsg(fd int, hdrs []mmsghdr) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])),
		uintptr(len(hdrs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// sendto sends one datagram without blocking.
func sendto(fd int, p []byte, dst *rawAddr) error {
	if len(p) == 0 {
		return nil
	}
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&dst.sa)), uintptr(dst.len))
	if e != 0 {
		return e
	}
	return nil
}

// waitWritable waits up to ms milliseconds for fd to take more data.
func waitWritable(fd, ms int) {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	_, _ = unix.Poll(fds[:], ms)
}

// addrFromRaw decodes a socket address the kernel filled in.
func addrFromRaw(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// toRaw encodes ap for a socket of the given family (AF_INET or AF_INET6;
// an IPv4 address is v4-mapped for an IPv6 socket). It reports false when
// the socket cannot reach the address.
func toRaw(ap netip.AddrPort, family int, out *rawAddr) bool {
	*out = rawAddr{}
	a := ap.Addr().Unmap()
	switch family {
	case unix.AF_INET:
		if !a.Is4() {
			return false
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&out.sa))
		sa4.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], ap.Port())
		sa4.Addr = a.As4()
		out.len = unix.SizeofSockaddrInet4
	case unix.AF_INET6:
		out.sa.Family = unix.AF_INET6
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&out.sa.Port))[:], ap.Port())
		out.sa.Addr = a.As16() // an IPv4 address comes out v4-mapped
		out.len = unix.SizeofSockaddrInet6
	default:
		return false
	}
	return true
}

// socketFamily returns the address family of a socket.
func socketFamily(fd int) int {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return 0
	}
	return v
}
