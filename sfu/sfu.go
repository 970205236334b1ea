package sfu

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// SFU is one node's selective forwarding unit: it holds conferences of
// participants, each with one PeerConnection, all on the one UDP port (and
// optional TCP port) the caller handed in.
//
// Locks are taken in this order only: SFU.mu, Conference.mu,
// Participant.mu, then upTrack.mu or downTrack.mu. No lock is held while a
// Handler callback runs.
type SFU struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	se     webrtc.SettingEngine
	udpMux ice.UDPMux
	tcpMux ice.TCPMux
	// batch queues the UDP writes of a fan-out; nil on a socket that is
	// not the kernel's (vnet) or off Linux.
	batch *batchConn

	// wg tracks conference tickers, participant workers and teardowns.
	wg sync.WaitGroup

	// mu guards conferences and closed.
	mu          sync.Mutex
	conferences map[string]*Conference
	closed      bool
}

// New validates cfg, fills its defaults and returns a running SFU.
func New(cfg Config) (*SFU, error) {
	if err := cfg.validateAndDefault(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &SFU{cfg: cfg, log: cfg.Logger.With("component", "sfu"), m: m, conferences: make(map[string]*Conference)}
	lf := pionLogs{log: s.log}

	se := webrtc.SettingEngine{LoggerFactory: lf}
	// mDNS would send multicast queries and hide nothing on a server.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.DisableActiveTCP(true)
	se.SetICETimeouts(cfg.ICEDisconnectedTimeout, cfg.ICEFailedTimeout, 0)
	if cfg.Net != nil {
		se.SetNet(cfg.Net)
	}
	var udpConn net.PacketConn = cfg.UDPMux
	if bc := newBatchConn(cfg.UDPMux); bc != nil {
		// One sendmmsg per fan-out instead of a sendto per packet and
		// subscriber (batchconn_linux.go).
		s.batch, udpConn = bc, bc
	}
	s.udpMux = ice.NewUDPMuxDefault(ice.UDPMuxParams{
		Logger: lf.NewLogger("sfu-udpmux"), UDPConn: udpConn, Net: cfg.Net,
	})
	se.SetICEUDPMux(s.udpMux)
	types := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	boundIPs := []net.IP{}
	if ua, ok := cfg.UDPMux.LocalAddr().(*net.UDPAddr); ok && !ua.IP.IsUnspecified() {
		boundIPs = append(boundIPs, ua.IP)
	}
	if cfg.TCPListener != nil {
		s.tcpMux = ice.NewTCPMuxDefault(ice.TCPMuxParams{
			Listener: cfg.TCPListener, Logger: lf.NewLogger("sfu-tcpmux"), ReadBufferSize: 64,
			WriteBufferSize: 4 << 20, // a slow TCP client drops packets, never blocks
		})
		se.SetICETCPMux(s.tcpMux)
		types = append(types, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
		if ta, ok := cfg.TCPListener.Addr().(*net.TCPAddr); ok && !ta.IP.IsUnspecified() && len(boundIPs) > 0 {
			boundIPs = append(boundIPs, ta.IP)
		}
	}
	se.SetNetworkTypes(types)
	if len(boundIPs) > 0 {
		// A socket bound to one address: offer only that address (and
		// loopback when that is what it is, as in tests).
		se.SetIPFilter(func(ip net.IP) bool {
			for _, b := range boundIPs {
				if b.Equal(ip) {
					return true
				}
			}
			return false
		})
		if boundIPs[0].IsLoopback() {
			se.SetIncludeLoopbackCandidate(true)
		}
	}
	if len(cfg.AdvertisedIPs) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        cfg.AdvertisedIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			return nil, fmt.Errorf("%w: advertised IPs: %w", ErrInvalidConfig, err)
		}
	}
	s.se = se
	return s, nil
}

func (s *SFU) now() int64 { return s.cfg.Now().UnixNano() }

// Stats is a snapshot of what the SFU holds, for readiness and load
// reporting.
type Stats struct {
	Conferences, Participants, Tracks int
}

// Stats counts conferences, participants and published tracks.
func (s *SFU) Stats() Stats {
	s.mu.Lock()
	confs := make([]*Conference, 0, len(s.conferences))
	for _, c := range s.conferences {
		confs = append(confs, c)
	}
	s.mu.Unlock()
	st := Stats{Conferences: len(confs)}
	for _, c := range confs {
		c.mu.Lock()
		st.Participants += len(c.participants)
		st.Tracks += len(c.tracks)
		c.mu.Unlock()
	}
	return st
}

// ICEServers returns the STUN/TURN servers to hand to clients.
func (s *SFU) ICEServers() []webrtc.ICEServer {
	return append([]webrtc.ICEServer(nil), s.cfg.ICEServers...)
}

// Join adds participantID to conference confID (created on first join),
// applies the client's offer and returns the answer, with this server's
// ICE candidates already in it (they are also trickled to
// h.OnICECandidate). Tracks of the others follow in a server offer
// (h.OnOffer) once the client is connected.
func (s *SFU) Join(ctx context.Context, confID, participantID, offerSDP string, h Handler) (*Participant, string, error) {
	if confID == "" || participantID == "" {
		return nil, "", fmt.Errorf("%w: empty conference or participant ID", ErrInvalidConfig)
	}
	p, err := newParticipant(s, participantID, h)
	if err != nil {
		return nil, "", err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = p.pc.Close()
		return nil, "", ErrClosed
	}
	conf := s.conferences[confID]
	if conf == nil {
		if len(s.conferences) >= s.cfg.MaxConferences {
			s.mu.Unlock()
			_ = p.pc.Close()
			return nil, "", fmt.Errorf("%w (limit %d)", ErrTooManyConferences, s.cfg.MaxConferences)
		}
		conf = newConference(s, confID)
		s.conferences[confID] = conf
		s.m.conferences.Inc()
	}
	err = conf.add(p)
	s.mu.Unlock()
	if err != nil {
		s.removeIfEmpty(conf)
		_ = p.pc.Close()
		return nil, "", err
	}
	s.m.participants.Inc()
	answer, err := p.answer(ctx, offerSDP)
	if err != nil {
		p.closeWith(err)
		return nil, "", err
	}
	p.start()
	conf.joined(p)
	s.log.Info("participant joined", "conference", confID, "participant", participantID)
	return p, answer, nil
}

// goTracked runs f on a goroutine Close waits for, unless the SFU is
// closing (then f does not run).
func (s *SFU) goTracked(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// removeIfEmpty drops a conference that has no participant left.
func (s *SFU) removeIfEmpty(c *Conference) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.closeIfEmpty() && s.conferences[c.id] == c {
		delete(s.conferences, c.id)
		s.m.conferences.Dec()
	}
}

// Close removes every participant (their OnClose gets ErrClosed), waits
// for every goroutine the SFU started, and closes the ICE sockets.
func (s *SFU) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var ps []*Participant
	for _, c := range s.conferences {
		ps = append(ps, c.members()...)
	}
	s.mu.Unlock()
	for _, p := range ps {
		p.closeWith(ErrClosed)
	}
	s.wg.Wait()
	var err error
	if s.tcpMux != nil {
		err = s.tcpMux.Close()
	}
	if e := s.udpMux.Close(); e != nil && err == nil {
		err = e
	}
	return err
}
