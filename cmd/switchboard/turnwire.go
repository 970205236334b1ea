package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-chat/switchboard/turn"
)

// bindTURN opens the TURN sockets: UDP and TCP on turn.listen and, when
// set, TLS on turn.tls_listen.
func bindTURN(cfg *Config, s *sockets, tlsCfg *tls.Config) error {
	var err error
	if s.turnUDP, err = bindUDP("turn.listen", cfg.TURN.Listen); err != nil {
		return err
	}
	if s.turnTCP, err = net.Listen("tcp", cfg.TURN.Listen); err != nil {
		return fmt.Errorf("turn.listen: cannot listen on tcp %s: %w", cfg.TURN.Listen, err)
	}
	if cfg.TURN.TLSListen != "" {
		ln, err := net.Listen("tcp", cfg.TURN.TLSListen)
		if err != nil {
			return fmt.Errorf("turn.tls_listen: cannot listen on %s: %w", cfg.TURN.TLSListen, err)
		}
		s.turnTLS = tls.NewListener(ln, tlsCfg)
	}
	return nil
}

// relayIP is the address TURN advertises in XOR-RELAYED-ADDRESS:
// turn.relay_ip (which defaults to public_ip), else the specific host
// turn.listen binds, else the first global unicast address of this
// machine's interfaces.
func relayIP(cfg *Config, log *slog.Logger) (netip.Addr, error) {
	if cfg.TURN.RelayIP != "" {
		return netip.ParseAddr(cfg.TURN.RelayIP)
	}
	if ip, err := netip.ParseAddr(hostOf(cfg.TURN.Listen)); err == nil && !ip.IsUnspecified() {
		return ip, nil
	}
	ifaces, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, err
	}
	var private netip.Addr
	for _, a := range ifaces {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr().Unmap()
		if !ip.Is4() || !ip.IsGlobalUnicast() {
			continue
		}
		if !ip.IsPrivate() {
			log.Warn("turn.relay_ip and public_ip are not set; advertising an address of this machine", "relay_ip", ip)
			return ip, nil
		}
		if !private.IsValid() {
			private = ip
		}
	}
	if private.IsValid() {
		log.Warn("turn.relay_ip and public_ip are not set; advertising a private address, which clients outside this network cannot reach: set public_ip", "relay_ip", private)
		return private, nil
	}
	return netip.Addr{}, errors.New("no global IPv4 address on this machine's interfaces; set public_ip")
}

// startTURN builds the relay on the bound TURN sockets. On error the TURN
// sockets are closed.
func startTURN(cfg *Config, s *sockets, secret string, log *slog.Logger, reg prometheus.Registerer) (*turn.Server, error) {
	ip, err := relayIP(cfg, log)
	if err != nil {
		s.closeTURN()
		return nil, fmt.Errorf("%w: turn.relay_ip: %w", ErrConfig, err)
	}
	bind := ""
	if h, err := netip.ParseAddr(hostOf(cfg.TURN.Listen)); err == nil && !h.IsUnspecified() {
		bind = h.String()
	}
	pcs := []net.PacketConn{s.turnUDP}
	lns := []net.Listener{s.turnTCP}
	if s.turnTLS != nil {
		lns = append(lns, s.turnTLS)
	}
	srv, err := turn.New(turn.Config{
		Realm:            cfg.TURN.Realm,
		SharedSecret:     secret,
		MaxTTL:           cfg.TURN.CredentialTTL,
		StaticUsers:      cfg.TURN.StaticUsers,
		RelayIP:          net.IP(ip.AsSlice()),
		RelayBindAddress: bind,
		RelayPortMin:     uint16(cfg.TURN.RelayPortMin),
		RelayPortMax:     uint16(cfg.TURN.RelayPortMax),
		AllowCIDRs:       cfg.TURN.AllowCIDRs,
		DenyCIDRs:        cfg.TURN.DenyCIDRs,
		OwnAddrs:         ownAddrs(s.addrs(), ip, interfaceAddrs()),
		UserQuota:        cfg.TURN.UserQuota,
		TotalQuota:       cfg.TURN.TotalQuota,
		Logger:           log,
		Registerer:       reg,
	}, pcs, lns)
	if err != nil {
		s.closeTURN()
		return nil, fmt.Errorf("turn: %w", err)
	}
	// The relay owns its sockets now; Close closes them.
	s.turnUDP, s.turnTCP, s.turnTLS = nil, nil, nil
	return srv, nil
}

// ownAddrs lists this process's other listeners so that TURN refuses to
// relay into them, even where turn.allow_cidrs admits their address (as
// --dev admits loopback). A wildcard-bound listener is listed on the relay
// IP, on loopback and on every local interface address. The relay's own
// TURN sockets are added by turn.New.
func ownAddrs(a boundAddrs, relay netip.Addr, local []netip.Addr) []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range []string{a.Client, a.Federation, a.Metrics, a.MediaUDP, a.MediaTCP} {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			continue
		}
		if !ap.Addr().IsUnspecified() {
			out = append(out, ap)
			continue
		}
		out = append(out, netip.AddrPortFrom(relay, ap.Port()),
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port()),
			netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port()))
		for _, l := range local {
			if l != relay {
				out = append(out, netip.AddrPortFrom(l, ap.Port()))
			}
		}
	}
	return out
}

// interfaceAddrs lists this machine's interface addresses (none if they
// cannot be read: the relay IP and loopback are listed regardless).
func interfaceAddrs() []netip.Addr {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

// turnProbe is the /ready check for TURN: a STUN Binding request (RFC 8489
// §6) to the relay's own UDP socket must be answered.
func turnProbe(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		target, err := netip.ParseAddrPort(addr)
		if err != nil {
			return err
		}
		if target.Addr().IsUnspecified() {
			lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
			if target.Addr().Is6() && !target.Addr().Is4In6() {
				lo = netip.IPv6Loopback()
			}
			target = netip.AddrPortFrom(lo, target.Port())
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "udp", target.String())
		if err != nil {
			return err
		}
		defer conn.Close()
		deadline, ok := ctx.Deadline()
		if !ok {
			deadline = time.Now().Add(readyTimeout)
		}
		_ = conn.SetDeadline(deadline)
		req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		if err != nil {
			return err
		}
		if _, err := conn.Write(req.Raw); err != nil {
			return fmt.Errorf("udp socket: %w", err)
		}
		buf := make([]byte, 1500)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return fmt.Errorf("no STUN answer from %s: %w", target, err)
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() != nil || res.TransactionID != req.TransactionID {
				continue
			}
			if res.Type != stun.BindingSuccess {
				return fmt.Errorf("STUN Binding answered with %s", res.Type)
			}
			return nil
		}
	}
}

// closeTURN closes the TURN sockets still held.
func (s *sockets) closeTURN() {
	for _, c := range []interface{ Close() error }{s.turnUDP, s.turnTCP, s.turnTLS} {
		if c != nil {
			_ = c.Close()
		}
	}
	s.turnUDP, s.turnTCP, s.turnTLS = nil, nil, nil
}
