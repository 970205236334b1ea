package turn

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults applied by New to zero-valued Config fields.
const (
	DefaultMaxTTL               = time.Hour
	DefaultRelayBindAddress     = "0.0.0.0"
	DefaultRelayPortMin         = 49152
	DefaultRelayPortMax         = 65535
	DefaultUserQuota            = 12
	DefaultTotalQuota           = 10000
	DefaultBandwidthBytesPerSec = 5 << 20 // 5 MiB/s per allocation and direction
	DefaultBindingRatePerSec    = 20.0    // unauthenticated Binding requests per source IP
)

// Config configures the relay. Every field's comment gives its default;
// New validates the whole config before filling defaults and refuses to
// start on anything it does not understand.
type Config struct {
	// Realm is the long-term credential realm (RFC 8489 §9.2). Required.
	Realm string
	// SharedSecret is the TURN REST secret, shared with the homeserver's
	// /voip/turnServer endpoint. Empty turns TURN REST auth off.
	SharedSecret string
	// MaxTTL is the furthest ahead a TURN REST username may expire.
	// Default 1 h.
	MaxTTL time.Duration
	// StaticUsers maps username to password for operators who need fixed
	// accounts. Optional; a static user shadows a REST username.
	StaticUsers map[string]string
	// RelayIP is the relay address advertised in XOR-RELAYED-ADDRESS: the
	// public IP for servers behind a 1:1 NAT. Required.
	RelayIP net.IP
	// RelayBindAddress is the local address relay sockets bind to.
	// Default "0.0.0.0".
	RelayBindAddress string
	// RelayPortMin and RelayPortMax bound the relay ports (inclusive).
	// Default 49152-65535.
	RelayPortMin, RelayPortMax uint16
	// AllowCIDRs admits peers the deny table would refuse (CIDRs or bare
	// addresses). DenyCIDRs refuses peers on top of the deny table and wins
	// over AllowCIDRs. A bad entry in either makes New fail.
	AllowCIDRs, DenyCIDRs []string
	// OwnAddrs are this server's own listener addresses; the relay refuses
	// them always, even when AllowCIDRs covers them (only a port-0 entry
	// refuses a whole address, so allowing loopback still admits other
	// loopback ports). The local addresses of the sockets handed to New,
	// and RelayIP on their ports, are added automatically; a socket bound
	// to a wildcard address adds the loopback addresses on its port too.
	OwnAddrs []netip.AddrPort
	// UserQuota is the most allocations one user may hold. Default 12.
	UserQuota int
	// TotalQuota is the most allocations the server holds. Default 10000.
	TotalQuota int
	// BandwidthBytesPerSec caps each allocation, per direction; UDP
	// datagrams over the cap are dropped, TCP relaying is slowed.
	// Default 5 MiB/s.
	BandwidthBytesPerSec int
	// BindingRatePerSec limits unauthenticated Binding requests per source
	// IP (burst: one second's worth). Default 20.
	BindingRatePerSec float64
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the switchboard_turn_* metrics. Nil registers
	// nothing (the metrics are still kept).
	Registerer prometheus.Registerer
	// Now is the clock for credential expiry and rate limits.
	// Default time.Now.
	Now func() time.Time
}

// validate checks the config as given, before defaults are filled.
func (c *Config) validate() error {
	if c.Realm == "" {
		return ErrNoRealm
	}
	if c.SharedSecret == "" && len(c.StaticUsers) == 0 {
		return ErrNoAuth
	}
	ip, ok := netip.AddrFromSlice(c.RelayIP)
	ip = ip.Unmap()
	if !ok || ip.IsUnspecified() || ip.IsMulticast() {
		return fmt.Errorf("%w: %v", ErrNoRelayIP, c.RelayIP)
	}
	if c.RelayBindAddress != "" {
		if _, err := netip.ParseAddr(c.RelayBindAddress); err != nil {
			return fmt.Errorf("%w: %q", ErrBadRelayBind, c.RelayBindAddress)
		}
	}
	if c.RelayPortMin != 0 && c.RelayPortMax != 0 && c.RelayPortMin > c.RelayPortMax {
		return fmt.Errorf("%w: %d-%d", ErrBadPortRange, c.RelayPortMin, c.RelayPortMax)
	}
	if c.MaxTTL < 0 || c.UserQuota < 0 || c.TotalQuota < 0 || c.BandwidthBytesPerSec < 0 || c.BindingRatePerSec < 0 {
		return ErrBadQuota
	}
	return nil
}

// withDefaults returns a copy of c with zero values replaced by defaults.
func (c Config) withDefaults() Config {
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultMaxTTL
	}
	if c.RelayBindAddress == "" {
		c.RelayBindAddress = DefaultRelayBindAddress
	}
	if c.RelayPortMin == 0 {
		c.RelayPortMin = DefaultRelayPortMin
	}
	if c.RelayPortMax == 0 {
		c.RelayPortMax = DefaultRelayPortMax
	}
	if c.UserQuota == 0 {
		c.UserQuota = DefaultUserQuota
	}
	if c.TotalQuota == 0 {
		c.TotalQuota = DefaultTotalQuota
	}
	if c.BandwidthBytesPerSec == 0 {
		c.BandwidthBytesPerSec = DefaultBandwidthBytesPerSec
	}
	if c.BindingRatePerSec == 0 {
		c.BindingRatePerSec = DefaultBindingRatePerSec
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}
