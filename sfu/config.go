package sfu

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is everything the SFU needs from its caller. The caller owns the
// sockets; the SFU closes UDPMux and TCPListener in Close (the ICE muxes
// close what they wrap).
type Config struct {
	// UDPMux is the one UDP socket every participant's ICE runs over
	// (port 7882 in production). Required.
	UDPMux net.PacketConn
	// TCPListener, if set, accepts ICE-TCP (RFC 6544) passive connections
	// (port 7881 in production).
	TCPListener net.Listener
	// AdvertisedIPs replace the host candidates' addresses, for a server
	// behind a 1:1 NAT. Optional.
	AdvertisedIPs []string
	// ICEServers are handed to clients (see SFU.ICEServers), for example
	// this node's TURN server. The SFU itself uses none.
	ICEServers []webrtc.ICEServer

	// MaxConferences bounds conferences on this node. Default 1000.
	MaxConferences int
	// MaxParticipantsPerConference bounds one conference. Default 100.
	MaxParticipantsPerConference int
	// MaxTracksPerParticipant bounds the tracks one participant publishes.
	// Default 8.
	MaxTracksPerParticipant int

	// AutoSubscribe subscribes every participant to every track of the
	// others as soon as it is published. When false (the default)
	// participants receive only what they ask for with SetSubscriptions.
	AutoSubscribe bool

	// InitialBitrate, MinBitrate and MaxBitrate bound each subscriber's
	// bandwidth estimate, bits/s. Defaults 1 Mbit/s, 100 kbit/s, 10 Mbit/s.
	InitialBitrate, MinBitrate, MaxBitrate int
	// KeyframeInterval is the least time between two keyframe requests
	// sent to a publisher for one layer. Default 1s.
	KeyframeInterval time.Duration
	// SendQueueSize is the number of packets that may wait for one
	// subscriber before new ones are dropped. Default 1024.
	SendQueueSize int
	// VideoCacheSize and AudioCacheSize are the packets kept per published
	// stream for NACK responses. Defaults 512 and 64.
	VideoCacheSize, AudioCacheSize int
	// ICEDisconnectedTimeout and ICEFailedTimeout are pion's ICE timeouts:
	// a participant whose ICE is failed (no restart in time) is removed.
	// Defaults 5s and 20s.
	ICEDisconnectedTimeout, ICEFailedTimeout time.Duration
	// AllocationInterval is how often bandwidth allocation and speaker
	// detection run per conference. Default 250ms.
	AllocationInterval time.Duration

	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// Registerer receives the switchboard_sfu_* metrics. May be nil.
	Registerer prometheus.Registerer
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Net replaces the host network, for tests on pion's vnet. UDPMux and
	// TCPListener must then come from the same Net. Default: the OS.
	Net transport.Net
}

func (c *Config) validateAndDefault() error {
	if c.UDPMux == nil {
		return fmt.Errorf("%w: UDPMux is required", ErrInvalidConfig)
	}
	for _, ip := range c.AdvertisedIPs {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("%w: advertised IP %q is not an IP address", ErrInvalidConfig, ip)
		}
	}
	for name, v := range map[string]int{
		"MaxConferences": c.MaxConferences, "MaxParticipantsPerConference": c.MaxParticipantsPerConference,
		"MaxTracksPerParticipant": c.MaxTracksPerParticipant, "InitialBitrate": c.InitialBitrate,
		"MinBitrate": c.MinBitrate, "MaxBitrate": c.MaxBitrate, "SendQueueSize": c.SendQueueSize,
		"VideoCacheSize": c.VideoCacheSize, "AudioCacheSize": c.AudioCacheSize,
	} {
		if v < 0 {
			return fmt.Errorf("%w: %s is negative", ErrInvalidConfig, name)
		}
	}
	if c.MaxBitrate > 0 && c.MinBitrate > c.MaxBitrate {
		return fmt.Errorf("%w: MinBitrate above MaxBitrate", ErrInvalidConfig)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxConferences, 1000)
	def(&c.MaxParticipantsPerConference, 100)
	def(&c.MaxTracksPerParticipant, 8)
	def(&c.InitialBitrate, 1_000_000)
	def(&c.MinBitrate, 100_000)
	def(&c.MaxBitrate, 10_000_000)
	def(&c.SendQueueSize, 1024)
	def(&c.VideoCacheSize, 512)
	def(&c.AudioCacheSize, 64)
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defd(&c.KeyframeInterval, time.Second)
	defd(&c.ICEDisconnectedTimeout, 5*time.Second)
	defd(&c.ICEFailedTimeout, 20*time.Second)
	defd(&c.AllocationInterval, 250*time.Millisecond)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}
