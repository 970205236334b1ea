package turn

import "syscall"

// forceSocketBuffers raises the buffers that SO_RCVBUF/SO_SNDBUF left
// below size with SO_RCVBUFFORCE/SO_SNDBUFFORCE (allowed with
// CAP_NET_ADMIN, refused otherwise) if force is set, and returns what the
// socket has.
func forceSocketBuffers(c any, size int, force bool) socketBuffers {
	sc, ok := c.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return socketBuffers{}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return socketBuffers{}
	}
	var got socketBuffers
	_ = rc.Control(func(fd uintptr) {
		got.read = forceOne(int(fd), syscall.SO_RCVBUF, syscall.SO_RCVBUFFORCE, size, force)
		got.write = forceOne(int(fd), syscall.SO_SNDBUF, syscall.SO_SNDBUFFORCE, size, force)
	})
	return got
}

// forceOne returns the buffer size in the units it is asked for: Linux
// reports twice that, the other half being its bookkeeping (socket(7)).
func forceOne(fd, opt, forceOpt, size int, force bool) int {
	v, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, opt)
	if err != nil {
		return 0
	}
	if v/2 >= size || !force {
		return v / 2
	}
	if syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, forceOpt, size) != nil {
		return v / 2 // no CAP_NET_ADMIN: keep what the caps allowed
	}
	if v, err = syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, opt); err != nil {
		return 0
	}
	return v / 2
}
