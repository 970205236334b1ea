//go:build linux

package sfu

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestBatchConn: datagrams written during a fan-out reach their
// destinations, in order, once it ends (also past one batch's slots), and
// writes outside a fan-out go straight out; neither allocates.
func TestBatchConn(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := newBatchConn(pc)
	if c == nil {
		t.Fatal("no batchConn for a UDP socket")
	}
	defer c.Close()
	var dsts [2]*net.UDPConn
	var addrs [2]netip.AddrPort
	for i := range dsts {
		d, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		dsts[i], addrs[i] = d, d.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	read := func(d *net.UDPConn, want string) {
		t.Helper()
		buf := make([]byte, 1500)
		_ = d.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := d.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		if got := string(buf[:n]); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}

	c.begin()
	for i := 0; i < batchSlots+6; i++ {
		if _, err := c.WriteToAddrPort([]byte(fmt.Sprintf("a%d", i)), addrs[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WriteTo([]byte("via WriteTo"), net.UDPAddrFromAddrPort(addrs[0])); err != nil {
		t.Fatal(err)
	}
	c.end()
	for i := 0; i < batchSlots+6; i++ {
		read(dsts[i%2], fmt.Sprintf("a%d", i))
	}
	read(dsts[0], "via WriteTo")
	if _, err := c.WriteToAddrPort([]byte("alone"), addrs[1]); err != nil {
		t.Fatal(err)
	}
	read(dsts[1], "alone")

	msg := []byte("x")
	if a := testing.AllocsPerRun(100, func() {
		c.begin()
		_, _ = c.WriteToAddrPort(msg, addrs[0])
		_, _ = c.WriteToAddrPort(msg, addrs[1])
		c.end()
	}); a != 0 {
		t.Errorf("%v allocations per fan-out, want 0", a)
	}
}
