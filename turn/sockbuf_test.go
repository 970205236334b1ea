package turn

import (
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// canForceBuffers reports whether this process may use SO_RCVBUFFORCE
// (CAP_NET_ADMIN), by trying it on a scratch socket.
func canForceBuffers(t *testing.T) bool {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	_ = rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 1<<20)
	})
	return serr == nil
}

// TestListenerSocketBuffers: the client-facing UDP listener gets its 4 MiB
// receive buffer even past net.core.rmem_max when the process may force it,
// and a warning naming the sysctl otherwise; relay sockets stay within the
// operator's limit.
func TestListenerSocketBuffers(t *testing.T) {
	checkLeaks(t)
	raw, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Fatalf("reading net.core.rmem_max: %v", err)
	}
	rmemMax, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	h := startHarness(t, nil)
	pl := h.srv.udpListeners[addrPortOf(h.udpAddr)]
	if pl == nil {
		t.Fatal("no UDP listener registered")
	}
	var got int
	if pl.detached { // the relay poller holds the socket by its descriptor alone
		got, err = socketBufferOfFD(pl.fd)
	} else {
		got, err = socketBufferOf(pl.PacketConn.(*net.UDPConn))
	}
	if err != nil {
		t.Fatal(err)
	}
	force := canForceBuffers(t)
	warned := strings.Contains(h.logs.String(), "socket buffers are smaller than asked for")
	t.Logf("rmem_max %d, may force %v: listener receive buffer %d, warned %v", rmemMax, force, got, warned)
	switch {
	case force || rmemMax >= listenerSocketBuffer:
		if got < listenerSocketBuffer || warned {
			t.Fatalf("listener receive buffer %d (warned %v), want %d", got, warned, listenerSocketBuffer)
		}
	default:
		if got < rmemMax || !warned {
			t.Fatalf("listener receive buffer %d (warned %v), want rmem_max %d and a warning", got, warned, rmemMax)
		}
	}

	// A relay socket asks for relaySocketBuffer and is not forced.
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b := setSocketBuffers(conn, relaySocketBuffer, false)
	if want := min(relaySocketBuffer, rmemMax); b.read != want {
		t.Fatalf("relay socket receive buffer %d, want %d (not forced past rmem_max %d)", b.read, want, rmemMax)
	}
}
