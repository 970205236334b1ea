package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// refChild is the reference forwarder: the least a Go program can do to
// forward the same packets. One UDP socket per publisher, one goroutine
// per socket: read a packet, look at its SSRC, and if it is a stream the
// subscribers receive (audio and the top layer, as from the SFU) write it
// to each subscriber's address. No SRTP, no rewriting, no feedback.
type refChild struct {
	forwarded atomic.Uint64

	mu    sync.Mutex
	conns []*net.UDPConn
	wg    sync.WaitGroup
}

func newRefChild() *refChild { return &refChild{} }

func (r *refChild) handle(m msg) msg {
	switch m.Op {
	case "ref_setup":
		ports := make([]int, 0, len(m.Routes))
		for _, rt := range m.Routes {
			port, err := r.listen(rt)
			if err != nil {
				return errMsg(err)
			}
			ports = append(ports, port)
		}
		return msg{Op: "ports", Ports: ports}
	case "stats":
		st := snapshot()
		st.Forwarded = r.forwarded.Load()
		return msg{Op: "stats", Stats: &st}
	}
	return errMsg(fmt.Errorf("unknown op %q", m.Op))
}

func (r *refChild) listen(rt route) (int, error) {
	dests := make([]netip.AddrPort, 0, len(rt.Dests))
	for _, d := range rt.Dests {
		ap, err := netip.ParseAddrPort(d)
		if err != nil {
			return 0, err
		}
		if !ap.Addr().IsLoopback() {
			return 0, fmt.Errorf("destination %s is not a loopback address", d)
		}
		dests = append(dests, ap)
	}
	want := make(map[uint32]bool, len(rt.SSRCs))
	for _, s := range rt.SSRCs {
		want[s] = true
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n < 12 || !want[binary.BigEndian.Uint32(buf[8:12])] {
				continue
			}
			for _, d := range dests {
				if _, err := c.WriteToUDPAddrPort(buf[:n], d); err == nil {
					r.forwarded.Add(1)
				}
			}
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

func (r *refChild) close() {
	r.mu.Lock()
	for _, c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
