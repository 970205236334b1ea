package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-chat/switchboard/sfu"
)

// bindSFU opens the SFU's media sockets: the one ICE UDP mux socket and,
// when set, the ICE-TCP listener.
func bindSFU(cfg *Config, s *sockets) error {
	var err error
	if s.mediaUDP, err = bindUDP("sfu.udp_listen", cfg.SFU.UDPListen); err != nil {
		return err
	}
	if cfg.SFU.TCPListen != "" {
		if s.mediaTCP, err = net.Listen("tcp", cfg.SFU.TCPListen); err != nil {
			return fmt.Errorf("sfu.tcp_listen: cannot listen on %s: %w", cfg.SFU.TCPListen, err)
		}
	}
	return nil
}

// startSFU builds the SFU on the bound media sockets. Candidates carry
// public_ip when the sockets are bound to every interface. On error the
// media sockets are closed.
func startSFU(cfg *Config, s *sockets, log *slog.Logger, reg prometheus.Registerer) (*sfu.SFU, error) {
	var advertised []string
	if cfg.PublicIP != "" {
		if ip, err := netip.ParseAddr(hostOf(cfg.SFU.UDPListen)); err != nil || ip.IsUnspecified() {
			advertised = []string{cfg.PublicIP}
		}
	}
	conf := sfu.Config{
		UDPMux:        s.mediaUDP,
		AdvertisedIPs: advertised,
		Logger:        log,
		Registerer:    reg,
	}
	if s.mediaTCP != nil {
		conf.TCPListener = s.mediaTCP
	}
	node, err := sfu.New(conf)
	if err != nil {
		s.closeSFU()
		return nil, fmt.Errorf("sfu: %w", err)
	}
	// The SFU owns its sockets now; Close closes them.
	s.mediaUDP, s.mediaTCP = nil, nil
	return node, nil
}

// closeSFU closes the media sockets still held.
func (s *sockets) closeSFU() {
	if s.mediaUDP != nil {
		_ = s.mediaUDP.Close()
	}
	if s.mediaTCP != nil {
		_ = s.mediaTCP.Close()
	}
	s.mediaUDP, s.mediaTCP = nil, nil
}
