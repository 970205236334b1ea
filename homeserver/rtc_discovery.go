package homeserver

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// LiveKitServicePath is where the LiveKit token service (lk-jwt-service's
// API, MSC4195) lives under the client API's base URL when the URL is not
// configured: cmd/switchboard mounts the token service there.
const LiveKitServicePath = "/livekit/jwt"

// RTCConfig configures MatrixRTC (Element Call) support in the homeserver:
// focus discovery (MSC4143), delayed events (MSC4140) and sticky events
// (MSC4354).
type RTCConfig struct {
	// DiscoveryDisabled stops advertising a LiveKit focus: rtc/transports
	// answers an empty list and /.well-known/matrix/client carries no
	// rtc_foci. Default false.
	DiscoveryDisabled bool
	// LiveKitServiceURL is the livekit_service_url advertised to clients.
	// Default: PublicBaseURL + LiveKitServicePath, or, with no
	// PublicBaseURL, the base URL the request came to (scheme and Host) +
	// LiveKitServicePath.
	LiveKitServiceURL string
	// LiveKitURLs are the WebSocket URLs of this server's LiveKit SFU(s),
	// against which delegate_delayed_leave checks its "url" (MSC4195).
	// Default: none, and then any URL is accepted.
	LiveKitURLs []string
	// TokenIssuer signs the LiveKit tokens of the get_token endpoint
	// (MSC4195, rtc_token.go). Default none: the endpoint answers
	// M_NOT_FOUND.
	TokenIssuer RTCTokenIssuer
	// MaxDelay caps the delay of an MSC4140 delayed event; longer delays
	// get M_MAX_DELAY_EXCEEDED. Default 24 h (Element Call asks for seconds,
	// and at least an hour for a delegated leave).
	MaxDelay time.Duration
	// MaxDelayedPerUser caps the delayed events one user may have
	// scheduled at once. Default 100.
	MaxDelayedPerUser int
	// MaxStickyDuration caps an MSC4354 sticky duration. Default one hour,
	// the MSC's maximum.
	MaxStickyDuration time.Duration
}

func (c *RTCConfig) validate() error {
	if c.LiveKitServiceURL != "" {
		u, err := url.Parse(c.LiveKitServiceURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("%w: LiveKit service URL %q must be an http(s) URL", ErrConfig, c.LiveKitServiceURL)
		}
	}
	if c.MaxDelay < 0 || c.MaxDelayedPerUser < 0 || c.MaxStickyDuration < 0 {
		return fmt.Errorf("%w: RTC limits must not be negative", ErrConfig)
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = 24 * time.Hour
	}
	if c.MaxDelayedPerUser == 0 {
		c.MaxDelayedPerUser = 100
	}
	if c.MaxStickyDuration == 0 {
		c.MaxStickyDuration = time.Hour
	}
	return nil
}

// liveKitServiceURL is the livekit_service_url to advertise to a request.
func (s *Server) liveKitServiceURL(c echo.Context) string {
	if u := s.cfg.RTC.LiveKitServiceURL; u != "" {
		return u
	}
	base := strings.TrimSuffix(s.cfg.PublicBaseURL, "/")
	if base == "" {
		base = c.Scheme() + "://" + c.Request().Host
	}
	return base + LiveKitServicePath
}

// rtcTransports is the list of foci this server offers (MSC4143: one
// LiveKit focus, reached through its token service).
func (s *Server) rtcTransports(c echo.Context) []map[string]string {
	if s.cfg.RTC.DiscoveryDisabled {
		return []map[string]string{}
	}
	return []map[string]string{{"type": "livekit", "livekit_service_url": s.liveKitServiceURL(c)}}
}

// getRTCTransports implements GET
// /_matrix/client/unstable/org.matrix.msc4143/rtc/transports (MSC4143,
// "Discovery of MatrixRTC foci"): authenticated, it lists the transports
// a client may use for calls in rooms of this server.
func (s *Server) getRTCTransports(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"rtc_transports": s.rtcTransports(c)})
}

// wellKnownClient implements GET /.well-known/matrix/client (spec:
// Client-Server API, "Well-known URIs") with MSC4143's
// org.matrix.msc4143.rtc_foci, which older MatrixRTC clients (Element Call
// before rtc/transports) read.
func (s *Server) wellKnownClient(c echo.Context) error {
	if s.cfg.PublicBaseURL == "" {
		return errNotFound("No well-known client configuration")
	}
	doc := map[string]any{"m.homeserver": map[string]string{"base_url": s.cfg.PublicBaseURL}}
	if !s.cfg.RTC.DiscoveryDisabled {
		doc["org.matrix.msc4143.rtc_foci"] = s.rtcTransports(c)
	}
	return c.JSON(http.StatusOK, doc)
}

// unstableFeatures are the unstable_features of /versions that the RTC
// code adds (spec: "GET /_matrix/client/versions").
func rtcUnstableFeatures() map[string]bool {
	return map[string]bool{
		"org.matrix.msc4140": true, // delayed events
		"org.matrix.msc4354": true, // sticky events
		"org.matrix.msc4143": true, // MatrixRTC foci discovery
	}
}
