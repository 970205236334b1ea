package main

import (
	"net/url"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver"
)

// MatrixRTCConfig configures what the homeserver offers Element Call and
// other MatrixRTC clients: focus discovery (MSC4143) and delayed events
// (MSC4140).
type MatrixRTCConfig struct {
	// Discovery advertises the built-in LiveKit focus in
	// /_matrix/client/unstable/org.matrix.msc4143/rtc/transports and as
	// org.matrix.msc4143.rtc_foci in /.well-known/matrix/client. Default
	// true.
	Discovery bool `yaml:"discovery"`
	// LiveKitServiceURL is the livekit_service_url handed to clients.
	// Default: public_base_url + /livekit/jwt (the built-in token
	// service), or the client's own view of this server's address.
	LiveKitServiceURL string `yaml:"livekit_service_url"`
	// MaxDelay is the longest delay a delayed event may ask for. Default
	// 24h.
	MaxDelay time.Duration `yaml:"max_delay"`
}

// validate adds the problems of the matrix_rtc section to v.
func (m MatrixRTCConfig) validate(v *validator) {
	if m.LiveKitServiceURL != "" {
		u, err := url.Parse(m.LiveKitServiceURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.addf("matrix_rtc.livekit_service_url", "must be an https:// or http:// URL with a host, got %q", m.LiveKitServiceURL)
		}
	}
	if m.MaxDelay < 0 {
		v.add("matrix_rtc.max_delay", "must not be negative")
	}
}

// homeserverRTC maps the matrix_rtc section onto homeserver.RTCConfig.
func homeserverRTC(m MatrixRTCConfig) homeserver.RTCConfig {
	return homeserver.RTCConfig{
		DiscoveryDisabled: !m.Discovery,
		LiveKitServiceURL: m.LiveKitServiceURL,
		MaxDelay:          m.MaxDelay,
	}
}
