package turn

// Socket buffer sizes asked for. A shared client-facing UDP socket takes
// bursts from every client at once; a process that the scheduler leaves
// off the CPU for tens of milliseconds (a busy 2-core machine does) comes
// back to a full queue, and the kernel drops what does not fit. At 4,000
// datagrams a second the stock Linux limit (net.core.rmem_max, 208 KiB,
// doubled by the kernel to 416 KiB of accounted memory) holds about 75 ms;
// 4 MiB holds most of a second. Measured in bench/turn/README.md.
const (
	listenerSocketBuffer = 4 << 20
	relaySocketBuffer    = 1 << 20
)

// socketBuffers is what setSocketBuffers obtained, in bytes as asked for
// (Linux accounts and reports twice that); 0 if the socket does not say.
type socketBuffers struct {
	read, write int
}

// sized reports whether both buffers are at least size bytes.
func (b socketBuffers) sized(size int) bool { return b.read >= size && b.write >= size }

// setSocketBuffers enlarges a socket's kernel buffers to size where it can:
// with SO_RCVBUF/SO_SNDBUF, which the kernel caps at net.core.rmem_max and
// wmem_max, and, if force is set and that falls short, with
// SO_RCVBUFFORCE/SO_SNDBUFFORCE, which a process with CAP_NET_ADMIN may use
// past the caps (socket(7)). Only the few client-facing listeners are
// forced; relay sockets, one per allocation, stay within the operator's
// limits.
func setSocketBuffers(c any, size int, force bool) socketBuffers {
	if rb, ok := c.(interface{ SetReadBuffer(int) error }); ok {
		_ = rb.SetReadBuffer(size)
	}
	if wb, ok := c.(interface{ SetWriteBuffer(int) error }); ok {
		_ = wb.SetWriteBuffer(size)
	}
	return forceSocketBuffers(c, size, force)
}
