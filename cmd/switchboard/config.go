package main

import (
	"path/filepath"
	"time"

	"github.com/switchboard-chat/switchboard/turn"
)

// Config is the whole configuration of `switchboard serve`: the shape of
// switchboard.yaml. Values are layered: built-in defaults (production or
// --dev), then the YAML file, then SWITCHBOARD_* environment variables, then
// flags. Listen addresses are host:port; port 0 asks the kernel for a free
// port (tests use it with --addr-file to learn what was bound), and an empty
// address turns that listener off where that is allowed.
type Config struct {
	// ServerName is the Matrix server name (host[:port]). Required.
	ServerName string `yaml:"server_name"`
	// PublicBaseURL is the client API URL clients are told about in
	// /.well-known/matrix/client. Default: none (in --dev: the bound client
	// listener).
	PublicBaseURL string `yaml:"public_base_url"`
	// PublicIP is the address other machines reach this one at; it is
	// advertised in SFU ICE candidates and TURN relayed addresses. Default:
	// none (in --dev: 127.0.0.1).
	PublicIP string `yaml:"public_ip"`
	// DataDir holds the signing key, generated certificates and secrets and
	// the SQLite database. Default "switchboard-data".
	DataDir string `yaml:"data_dir"`
	// Database is a PostgreSQL URL (postgres://...) or a SQLite path
	// (sqlite:PATH). Default: sqlite:<data_dir>/switchboard.db.
	Database string `yaml:"database"`
	// Redis is a redis:// or rediss:// URL for running several processes
	// together. Default: none (one process).
	Redis string `yaml:"redis"`
	// NodeID names this process among the nodes of one server (logs,
	// wake-up messages). Default: generated at each start.
	NodeID string `yaml:"node_id"`
	// SigningKeyFile is the Synapse-format ed25519 key file. Default:
	// <data_dir>/signing.key, generated on first start.
	SigningKeyFile string `yaml:"signing_key_file"`
	// ShutdownTimeout bounds how long in-flight requests may take after
	// SIGINT/SIGTERM. Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	Log          LogConfig          `yaml:"log"`
	Registration RegistrationConfig `yaml:"registration"`
	Client       ListenerConfig     `yaml:"client"`
	Federation   FederationConfig   `yaml:"federation"`
	Metrics      MetricsConfig      `yaml:"metrics"`
	TURN         TURNConfig         `yaml:"turn"`
	SFU          SFUConfig          `yaml:"sfu"`
	MatrixRTC    MatrixRTCConfig    `yaml:"matrix_rtc"`
	Limits       LimitsConfig       `yaml:"limits"`
	Push         PushConfig         `yaml:"push"`
}

// PushConfig is outbound delivery to push gateways (Sygnal, ntfy...).
type PushConfig struct {
	// AllowCIDRs are loopback or private networks push gateways may be
	// reached at (refused by default, as for federation), e.g.
	// ["127.0.0.1/32"] for a gateway beside the server. Default: none (in
	// --dev: loopback).
	AllowCIDRs []string `yaml:"allow_cidrs"`
}

// LogConfig selects the log/slog handler.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json or text. Default json (in --dev: text).
	Format string `yaml:"format"`
}

// RegistrationConfig says who may create accounts.
type RegistrationConfig struct {
	// Mode is open, token or closed. Default closed (in --dev: open).
	Mode string `yaml:"mode"`
	// Tokens are accepted by m.login.registration_token in token mode.
	Tokens []string `yaml:"tokens"`
	// SharedSecret enables /_synapse/admin/v1/register for
	// `switchboard register`. Default: none (in --dev: generated into the
	// data directory).
	SharedSecret string `yaml:"shared_secret"`
}

// ListenerConfig is an HTTP listener with optional TLS.
type ListenerConfig struct {
	// Listen is host:port. Client default ":8008"; federation ":8448"
	// (empty turns federation off).
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey are PEM files. Client: optional (plain HTTP when
	// empty). Federation: default <data_dir>/tls.crt and tls.key, a
	// self-signed pair generated on first start.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
}

// FederationConfig is the federation listener and how this server reaches
// other servers.
type FederationConfig struct {
	// Listen is host:port. Default ":8448"; empty turns federation off.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey are PEM files. Default <data_dir>/tls.crt and
	// tls.key, a self-signed pair generated on first start.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// SkipTLSVerify turns off verification of other servers' certificates.
	// Only for test setups with self-signed certificates. Default false.
	SkipTLSVerify bool `yaml:"skip_tls_verify"`
	// AllowCIDRs are loopback or private networks that outbound federation
	// may reach (by default they are refused, after DNS and redirects), e.g.
	// ["127.0.0.1/32"] for several servers on one machine. Default: none.
	AllowCIDRs []string `yaml:"allow_cidrs"`
}

// MetricsConfig is the operator listener: /metrics, /health, /ready.
type MetricsConfig struct {
	// Listen is host:port. Default "127.0.0.1:9090"; empty turns it off.
	Listen string `yaml:"listen"`
	// Pprof serves Go's /debug/pprof/ profiles on the metrics listener.
	// Default false: profiles reveal internals, keep the listener private.
	Pprof bool `yaml:"pprof"`
}

// TURNConfig configures the TURN relay (RFC 8656) and the TURN REST
// credentials /voip/turnServer hands out.
type TURNConfig struct {
	// Enabled turns the relay on. Default true.
	Enabled bool `yaml:"enabled"`
	// Listen is the UDP and TCP host:port. Default ":3478".
	Listen string `yaml:"listen"`
	// TLSListen is the TURN-over-TLS host:port. Default ":5349"; empty
	// turns it off.
	TLSListen string `yaml:"tls_listen"`
	// TLSCert and TLSKey default to the federation certificate.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// Realm defaults to the host part of server_name.
	Realm string `yaml:"realm"`
	// SharedSecret signs TURN REST credentials. Default: generated into
	// <data_dir>/turn_shared_secret on first start.
	SharedSecret string `yaml:"shared_secret"`
	// CredentialTTL is the lifetime of issued credentials. Default 1h.
	CredentialTTL time.Duration `yaml:"credential_ttl"`
	// URIs handed to clients. Default: turn:<host>:<port>?transport=udp and
	// ?transport=tcp (and turns: when TLS is on), host = public_ip or the
	// server name's host.
	URIs []string `yaml:"uris"`
	// RelayIP is the address put in relayed transport addresses. Default
	// public_ip.
	RelayIP string `yaml:"relay_ip"`
	// RelayPortMin and RelayPortMax bound relay ports. Default
	// 49152-65535.
	RelayPortMin int `yaml:"relay_port_min"`
	RelayPortMax int `yaml:"relay_port_max"`
	// AllowCIDRs are peers relayed to even though they are special-purpose
	// addresses (loopback, private...). Default none (in --dev: loopback).
	AllowCIDRs []string `yaml:"allow_cidrs"`
	// DenyCIDRs are refused in addition to the built-in deny table.
	DenyCIDRs []string `yaml:"deny_cidrs"`
	// UserQuota caps allocations per username; TotalQuota caps all.
	// Default 12 and 10000.
	UserQuota  int `yaml:"user_quota"`
	TotalQuota int `yaml:"total_quota"`
	// StaticUsers maps fixed TURN usernames to passwords, for devices that
	// cannot fetch TURN REST credentials. Default none.
	StaticUsers map[string]string `yaml:"static_users"`
}

// SFUConfig configures the selective forwarding unit's media sockets.
type SFUConfig struct {
	// Enabled turns the SFU on. Default true.
	Enabled bool `yaml:"enabled"`
	// UDPListen is the one ICE UDP mux socket. Default ":7882".
	UDPListen string `yaml:"udp_listen"`
	// TCPListen is the ICE-TCP listener. Default ":7881"; empty turns
	// ICE-TCP off.
	TCPListen string `yaml:"tcp_listen"`
}

// LimitsConfig holds request size and rate limits.
type LimitsConfig struct {
	// MaxRequestBytes caps request bodies. Default 1 MiB.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// RateLimit: zero values mean the homeserver's defaults.
	RateLimit RateLimitConfig `yaml:"rate_limit"`
}

// RateLimitConfig is per-client token buckets.
type RateLimitConfig struct {
	Disabled      bool    `yaml:"disabled"`
	SendPerSecond float64 `yaml:"send_per_second"`
	SendBurst     int     `yaml:"send_burst"`
	// Login: failed logins per client IP; LoginAccount: per account;
	// Register: registrations per client IP (README, "Abuse and limits").
	LoginPerSecond        float64 `yaml:"login_per_second"`
	LoginBurst            int     `yaml:"login_burst"`
	LoginAccountPerSecond float64 `yaml:"login_account_per_second"`
	LoginAccountBurst     int     `yaml:"login_account_burst"`
	RegisterPerSecond     float64 `yaml:"register_per_second"`
	RegisterBurst         int     `yaml:"register_burst"`
	// Federation: per remote address on the federation listener.
	FederationPerSecond float64 `yaml:"federation_per_second"`
	FederationBurst     int     `yaml:"federation_burst"`
}

// Default ports (DESIGN.md, "Running it").
const (
	defaultClientPort     = "8008"
	defaultFederationPort = "8448"
	defaultTURNPort       = "3478"
	defaultTURNTLSPort    = "5349"
	defaultMediaUDPPort   = "7882"
	defaultMediaTCPPort   = "7881"
	defaultMetricsPort    = "9090"
	defaultDataDir        = "switchboard-data"
)

// defaultConfig is the production base layer: every listener on all
// interfaces except metrics, registration closed, JSON logs.
func defaultConfig() Config {
	return Config{
		DataDir:         defaultDataDir,
		ShutdownTimeout: 10 * time.Second,
		Log:             LogConfig{Level: "info", Format: "json"},
		Registration:    RegistrationConfig{Mode: "closed"},
		Client:          ListenerConfig{Listen: ":" + defaultClientPort},
		Federation:      FederationConfig{Listen: ":" + defaultFederationPort},
		Metrics:         MetricsConfig{Listen: "127.0.0.1:" + defaultMetricsPort},
		TURN: TURNConfig{
			Enabled:       true,
			Listen:        ":" + defaultTURNPort,
			TLSListen:     ":" + defaultTURNTLSPort,
			CredentialTTL: time.Hour,
			RelayPortMin:  turn.DefaultRelayPortMin,
			RelayPortMax:  turn.DefaultRelayPortMax,
			UserQuota:     turn.DefaultUserQuota,
			TotalQuota:    turn.DefaultTotalQuota,
		},
		SFU: SFUConfig{
			Enabled:   true,
			UDPListen: ":" + defaultMediaUDPPort,
			TCPListen: ":" + defaultMediaTCPPort,
		},
		MatrixRTC: MatrixRTCConfig{Discovery: true, MaxDelay: 24 * time.Hour},
		Limits:    LimitsConfig{MaxRequestBytes: 1 << 20},
	}
}

// devConfig is the --dev base layer: everything on 127.0.0.1, open
// registration, console logs, TURN allowed to relay to loopback so a browser
// on the same machine can use it.
func devConfig() Config {
	c := defaultConfig()
	c.ServerName = "localhost"
	c.PublicIP = "127.0.0.1"
	c.Log.Format = "text"
	c.Registration.Mode = "open"
	c.Client.Listen = "127.0.0.1:" + defaultClientPort
	c.Federation.Listen = "127.0.0.1:" + defaultFederationPort
	c.Metrics.Listen = "127.0.0.1:" + defaultMetricsPort
	c.TURN.Listen = "127.0.0.1:" + defaultTURNPort
	c.TURN.TLSListen = "127.0.0.1:" + defaultTURNTLSPort
	c.TURN.AllowCIDRs = []string{"127.0.0.0/8", "::1/128"}
	c.Push.AllowCIDRs = []string{"127.0.0.0/8", "::1/128"}
	c.SFU.UDPListen = "127.0.0.1:" + defaultMediaUDPPort
	c.SFU.TCPListen = "127.0.0.1:" + defaultMediaTCPPort
	return c
}

// Paths of files kept in the data directory.
const (
	signingKeyName         = "signing.key"
	tlsCertName            = "tls.crt"
	tlsKeyName             = "tls.key"
	turnSecretName         = "turn_shared_secret"
	registrationSecretName = "registration_shared_secret"
	sqliteName             = "switchboard.db"
)

// resolvePaths fills the defaults that depend on other values (data_dir,
// server_name). It runs after all layers are applied and before Validate.
func (c *Config) resolvePaths() {
	if c.Database == "" && c.DataDir != "" {
		c.Database = "sqlite:" + filepath.Join(c.DataDir, sqliteName)
	}
	if c.SigningKeyFile == "" && c.DataDir != "" {
		c.SigningKeyFile = filepath.Join(c.DataDir, signingKeyName)
	}
	if c.Federation.TLSCert == "" && c.Federation.TLSKey == "" && c.DataDir != "" {
		c.Federation.TLSCert = filepath.Join(c.DataDir, tlsCertName)
		c.Federation.TLSKey = filepath.Join(c.DataDir, tlsKeyName)
	}
	if c.TURN.TLSCert == "" && c.TURN.TLSKey == "" {
		c.TURN.TLSCert = c.Federation.TLSCert
		c.TURN.TLSKey = c.Federation.TLSKey
	}
	if c.TURN.Realm == "" && c.ServerName != "" {
		host, _, err := splitServerName(c.ServerName)
		if err == nil {
			c.TURN.Realm = host
		}
	}
	if c.TURN.RelayIP == "" {
		c.TURN.RelayIP = c.PublicIP
	}
}

// generatedTLS reports whether the federation certificate is the
// self-signed pair switchboard generates in the data directory (as opposed
// to files the operator configured).
func (c *Config) generatedTLS() bool {
	return c.DataDir != "" &&
		c.Federation.TLSCert == filepath.Join(c.DataDir, tlsCertName) &&
		c.Federation.TLSKey == filepath.Join(c.DataDir, tlsKeyName)
}
