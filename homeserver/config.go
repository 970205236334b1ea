package homeserver

import (
	"crypto/ed25519"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver/federation"
	hsync "github.com/switchboard-chat/switchboard/homeserver/sync"
	"github.com/switchboard-chat/switchboard/internal/clock"
)

// Registration modes for Config.Registration.
const (
	RegistrationOpen   = "open"
	RegistrationToken  = "token"
	RegistrationClosed = "closed"
)

// Config is everything the homeserver needs from its caller. cmd/switchboard
// fills it from the YAML file, environment and flags; tests fill it directly.
type Config struct {
	// ServerName is the Matrix server name, e.g. "example.org" or
	// "127.0.0.1:8448". Required.
	ServerName string
	// PublicBaseURL is the client API base URL advertised in
	// /.well-known/matrix/client, e.g. "https://matrix.example.org".
	// Default: none (the well-known document is then 404).
	PublicBaseURL string
	// Database is a PostgreSQL URL ("postgres://...") or a SQLite file path
	// (optionally prefixed "sqlite:" or "file:"). Required.
	Database string
	// Registration is one of "open", "token" or "closed". Default "closed".
	Registration string
	// RegistrationTokens are accepted by m.login.registration_token when
	// Registration is "token".
	RegistrationTokens []string
	// RegistrationSharedSecret enables the shared-secret admin registration
	// endpoint (/_synapse/admin/v1/register) used by `switchboard register`.
	// Default: empty, endpoint disabled.
	RegistrationSharedSecret string
	// SigningKey and KeyID sign the events this server creates. Required.
	SigningKey ed25519.PrivateKey
	KeyID      string
	// TURN configures /voip/turnServer. Zero value: TURN is off and the
	// endpoint answers {}.
	TURN TURNConfig
	// MaxRequestBytes caps request bodies. Default 1 MiB (events themselves
	// are capped at 65,536 bytes by the spec).
	MaxRequestBytes int64
	// RateLimit configures per-client request limits. Zero value: defaults.
	RateLimit RateLimitConfig
	// Federation configures the server-server API. Zero value: peers'
	// certificates are verified and internal addresses are refused.
	Federation FederationConfig
	// Push configures delivery to push gateways (push_*.go). Zero value:
	// gateways on loopback or private addresses are refused.
	Push PushConfig
	// RTC configures MatrixRTC support (Element Call): focus discovery,
	// delayed and sticky events (rtc_discovery.go). Zero value: on, with
	// defaults.
	RTC RTCConfig
	// Clock is the time source of sync timeouts, typing, presence and
	// rate limits (internal/clock). Default: the wall clock, or, when only
	// Now is set, Now with the wall clock's timers.
	Clock clock.Clock
	// Now is the current time. Default Clock.Now; New sets it to
	// Clock.Now when Clock is given, so the two never disagree.
	Now func() time.Time
	// Notifier wakes /sync long-polls after each commit (homeserver/sync).
	// Default: hsync.NewLocalNotifier, one process; a cluster passes one
	// that carries commits between processes. New calls its Start.
	Notifier hsync.Notifier
	// Ephemeral holds typing and presence. Default: in memory
	// (hsync.NewLocalEphemeral on Clock).
	Ephemeral hsync.Ephemeral
	// FederationLease decides which process sends to a federation
	// destination: at most one sender per destination across all nodes.
	// Default: federation.LocalLease (one process, always granted).
	FederationLease federation.SenderLease
}

// PushConfig configures outbound requests to push gateways.
type PushConfig struct {
	// AllowNetworks lists CIDRs (or single IPs) of gateways that may be
	// reached although loopback or private, e.g. "127.0.0.1/32" for a
	// Sygnal or ntfy beside the server. Default: none (--dev: loopback).
	AllowNetworks []string
	// RetryMin and RetryMax bound the exponential backoff while a
	// gateway is unreachable. Defaults 1 s and 10 min.
	RetryMin, RetryMax time.Duration
}

// FederationConfig configures the server-server API (see
// federation.Options for each field and its default).
// FederationConfig configures the server-server API (see
// federation.Options for each field and its default).
type FederationConfig = federation.Options

// TURNConfig is what /voip/turnServer hands out: TURN REST credentials
// (draft-uberti-behave-turn-rest) signed with SharedSecret.
type TURNConfig struct {
	URIs         []string
	SharedSecret string
	// TTL of issued credentials. Default 1 h.
	TTL time.Duration
}

// RateLimitConfig holds token-bucket parameters per client (user or IP).
type RateLimitConfig struct {
	// PerSecond is the sustained rate, Burst the bucket size. Send: per
	// user, default 50/s with a burst of 200.
	SendPerSecond float64
	SendBurst     int
	// Login: failed logins per client IP (login_limits.go). Default 1/s
	// with a burst of 10. A right password never uses a token.
	LoginPerSecond float64
	LoginBurst     int
	// LoginAccount: failed logins per account, from any address. Default
	// one per 30 s (1/30) with a burst of 5.
	LoginAccountPerSecond float64
	LoginAccountBurst     int
	// Register: registration requests per client IP, a bucket of its own.
	// Default 1/s with a burst of 10.
	RegisterPerSecond float64
	RegisterBurst     int
	// FederationPerSecond and FederationBurst bound the requests one
	// remote address makes to the federation listener, counted before a
	// request's signature is checked (so forged requests cost little).
	// Default 100/s with a burst of 500: a busy peer sends one
	// transaction at a time, plus queries.
	FederationPerSecond float64
	FederationBurst     int
	// Disabled turns limits off (load tests).
	Disabled bool
}
