package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// sockets are every listener serve opens, bound before any component
// starts so that a port conflict fails start-up as a whole. A nil field is a
// listener that is turned off.
type sockets struct {
	client     net.Listener
	federation net.Listener
	metrics    net.Listener
	turnUDP    net.PacketConn
	turnTCP    net.Listener
	turnTLS    net.Listener
	mediaUDP   net.PacketConn
	mediaTCP   net.Listener
}

// boundAddrs are the addresses actually bound (ports resolved when the
// configuration asked for port 0). serve writes them to --addr-file as JSON
// so tests and scripts can find a server started on free ports.
type boundAddrs struct {
	Client     string `json:"client"`
	Federation string `json:"federation,omitempty"`
	Metrics    string `json:"metrics,omitempty"`
	TURNUDP    string `json:"turn_udp,omitempty"`
	TURNTCP    string `json:"turn_tcp,omitempty"`
	TURNTLS    string `json:"turn_tls,omitempty"`
	MediaUDP   string `json:"media_udp,omitempty"`
	MediaTCP   string `json:"media_tcp,omitempty"`
}

// bindSockets opens every listener of cfg. On error everything opened so
// far is closed and the error names the config key.
func bindSockets(cfg *Config, mat *material) (*sockets, error) {
	s := &sockets{}
	var err error
	tcp := func(key, addr string) net.Listener {
		if err != nil || addr == "" {
			return nil
		}
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err != nil {
			err = fmt.Errorf("%s: cannot listen on %s: %w", key, addr, err)
		}
		return ln
	}
	s.client = tcp("client.listen", cfg.Client.Listen)
	s.federation = tcp("federation.listen", cfg.Federation.Listen)
	s.metrics = tcp("metrics.listen", cfg.Metrics.Listen)
	if err == nil && cfg.SFU.Enabled {
		err = bindSFU(cfg, s)
	}
	if err == nil && cfg.TURN.Enabled {
		err = bindTURN(cfg, s, mat.turnTLS)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// bindUDP opens a UDP socket for key's address.
func bindUDP(key, addr string) (net.PacketConn, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot listen on udp %s: %w", key, addr, err)
	}
	return pc, nil
}

// close closes every socket still held (the servers own the ones handed to
// them).
func (s *sockets) close() {
	for _, c := range []io.Closer{s.client, s.federation, s.metrics, s.turnUDP, s.turnTCP, s.turnTLS, s.mediaUDP, s.mediaTCP} {
		if c != nil {
			_ = c.Close()
		}
	}
}

func (s *sockets) addrs() boundAddrs {
	ln := func(l net.Listener) string {
		if l == nil {
			return ""
		}
		return l.Addr().String()
	}
	pc := func(p net.PacketConn) string {
		if p == nil {
			return ""
		}
		return p.LocalAddr().String()
	}
	return boundAddrs{
		Client:     ln(s.client),
		Federation: ln(s.federation),
		Metrics:    ln(s.metrics),
		TURNUDP:    pc(s.turnUDP),
		TURNTCP:    ln(s.turnTCP),
		TURNTLS:    ln(s.turnTLS),
		MediaUDP:   pc(s.mediaUDP),
		MediaTCP:   ln(s.mediaTCP),
	}
}

// writeAddrFile writes addrs as JSON, atomically (rename), so a reader
// polling for the file never sees half of it.
func writeAddrFile(path string, addrs boundAddrs) error {
	data, err := json.MarshalIndent(addrs, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// turnURIs are the TURN URIs (RFC 7065) handed to clients: the configured
// ones, or ones derived from the bound TURN sockets and the public host.
// None when TURN is not running.
func turnURIs(cfg *Config, addrs boundAddrs) []string {
	if addrs.TURNUDP == "" && addrs.TURNTCP == "" {
		return nil
	}
	if len(cfg.TURN.URIs) > 0 {
		return cfg.TURN.URIs
	}
	host := cfg.TURN.RelayIP
	if host == "" {
		host, _, _ = splitServerName(cfg.ServerName)
	}
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	var uris []string
	if _, port, err := net.SplitHostPort(addrs.TURNUDP); err == nil {
		uris = append(uris, "turn:"+host+":"+port+"?transport=udp")
	}
	if _, port, err := net.SplitHostPort(addrs.TURNTCP); err == nil {
		uris = append(uris, "turn:"+host+":"+port+"?transport=tcp")
	}
	if _, port, err := net.SplitHostPort(addrs.TURNTLS); err == nil {
		uris = append(uris, "turns:"+host+":"+port+"?transport=tcp")
	}
	return uris
}
