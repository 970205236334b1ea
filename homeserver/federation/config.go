package federation

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/internal/clock"
)

// Options are the operator's federation settings.
type Options struct {
	// SkipTLSVerify turns off verification of peers' TLS certificates.
	// Only for test setups with self-signed certificates. Default false.
	SkipTLSVerify bool
	// AllowNetworks lists CIDRs (or single IPs) that outbound federation
	// may reach even though they are loopback or private, e.g.
	// "127.0.0.1/32" for servers on one machine. Default: none.
	AllowNetworks []string
	// KeyValidity is how long a fetched copy of our key document stays
	// valid (valid_until_ts). Default 24 h.
	KeyValidity time.Duration
	// RetryMin and RetryMax bound the exponential backoff of outbound
	// transactions to an unreachable server. Defaults 2 s and 10 min.
	RetryMin, RetryMax time.Duration
	// StateByID is how many unknown state events a gap fill fetches one
	// by one with /event; with more it asks for the whole state with
	// /state. Default 50; negative: always /state.
	StateByID int
	// Resolver looks up server names (addresses and SRV records).
	// Default net.DefaultResolver; tests pass one that never leaves the
	// machine.
	Resolver *net.Resolver
}

// Config is what New needs. Every field is required unless its comment
// gives a default.
type Config struct {
	// ServerName, KeyID and SigningKey are this server's name and its
	// ed25519 signing key (spec: Server-Server API, "Server discovery",
	// "Retrieving server keys").
	ServerName string
	KeyID      string
	SigningKey ed25519.PrivateKey
	Options    Options
	// DB is the homeserver's storage; Rooms its one append path.
	DB    *storage.DB
	Rooms *rooms.Rooms
	// Clock times the queue's backoff and key validity. Default real time.
	Clock clock.Clock
	// Local, Ephemeral and Positions are what federation asks of the rest
	// of the homeserver.
	Local     Local
	Ephemeral Ephemeral
	Positions Positions
	// Lease decides which node sends to a destination. Default
	// LocalLease (one node: always granted).
	Lease SenderLease
	// HTTP are the homeserver's HTTP edge pieces the federation listener
	// shares; JSON its JSON checks.
	HTTP HTTPHooks
	JSON JSONChecks
}

func (c *Config) validate() error {
	switch {
	case c.ServerName == "" || c.KeyID == "" || len(c.SigningKey) != ed25519.PrivateKeySize:
		return fmt.Errorf("%w: server name, key ID and an ed25519 signing key are required", ErrConfig)
	case c.DB == nil || c.Rooms == nil:
		return fmt.Errorf("%w: storage and rooms are required", ErrConfig)
	case c.Local == nil || c.Ephemeral == nil || c.Positions == nil:
		return fmt.Errorf("%w: Local, Ephemeral and Positions are required", ErrConfig)
	case c.HTTP.RenderError == nil || c.HTTP.LogRequests == nil || c.HTTP.Limit == nil:
		return fmt.Errorf("%w: the HTTP hooks are required", ErrConfig)
	case c.JSON.Canonical == nil || c.JSON.Request == nil:
		return fmt.Errorf("%w: the JSON checks are required", ErrConfig)
	}
	if c.Clock == nil {
		c.Clock = clock.Real()
	}
	if c.Lease == nil {
		c.Lease = LocalLease{}
	}
	return c.Options.Validate()
}

// Local is what federation asks of this server's own users and rooms
// beyond storage; the homeserver implements it.
type Local interface {
	// Profile is userID's displayname and avatar_url, as the profile
	// query and a join event carry them.
	Profile(ctx context.Context, userID string) map[string]any
	// Visibility is what server may see of roomID (spec: Client-Server
	// API, "History visibility", for servers).
	Visibility(roomID, server string) Visibility
	// ValidAlias reports whether alias is a well-formed alias of this
	// server.
	ValidAlias(alias string) bool
	// PublicRooms is one page of this server's room directory.
	PublicRooms(ctx context.Context, limit int, since string) (map[string]any, error)
	// OpenIDUserInfo is the user an OpenID token of ours was issued to.
	OpenIDUserInfo(ctx context.Context, token string) (string, error)
	// DeliverToServices hands to-device messages addressed to in-process
	// services (the call focus) to them and returns the rest.
	DeliverToServices(msgs []storage.ToDevice) []storage.ToDevice
}

// Visibility answers, for one room and one server, whether an event may
// be seen; it may cache what it read across calls.
type Visibility interface {
	Visible(ctx context.Context, e storage.Event) (bool, error)
}

// Presence is one user's presence as federation reads and writes it
// (spec: Server-Server API, "Presence").
type Presence struct {
	Presence  string // online, unavailable or offline
	StatusMsg string // "" for none
	// LastActive is when the user was last active; zero when unknown.
	LastActive      time.Time
	CurrentlyActive bool
}

// Ephemeral is typing and presence (spec: Server-Server API, "Typing
// Notifications", "Presence"), kept by the homeserver.
type Ephemeral interface {
	SetTyping(roomID, userID string, typing bool, timeout time.Duration)
	// SetPresence records a remote user's presence.
	SetPresence(ctx context.Context, userID string, p Presence)
	// Presence is a user's current presence, if known.
	Presence(userID string) (Presence, bool)
}

// Positions are the homeserver's stream positions: a device list's
// stream_id is the position of the user's last device change.
type Positions interface {
	// Position is the committed-through position of the event streams.
	Position() int64
	// LastFor is the position of the last write to notification key.
	LastFor(key string) int64
}

// HTTPHooks are the homeserver's HTTP edge, shared by the federation
// listener: one error rendering, one request log, one rate limit.
type HTTPHooks struct {
	// RenderError writes an error as a Matrix error answer.
	RenderError echo.HTTPErrorHandler
	// LogRequests logs each request.
	LogRequests echo.MiddlewareFunc
	// Limit refuses a remote address over its request rate (429
	// M_LIMIT_EXCEEDED); nil error lets the request through.
	Limit func(host string) error
}

// JSONChecks are the homeserver's strict JSON rules (spec: Appendices,
// "Canonical JSON"): Canonical for event content (stripped state of an
// invite), Request for other request bodies (no number rules).
type JSONChecks struct {
	Canonical func([]byte) error
	Request   func([]byte) error
}

// SenderLease decides which node of a cluster sends to a destination:
// at most one sender per destination across all nodes, so that
// transactions to a server go out in order and once. A destination's
// sender acquires the lease before its first transaction and releases it
// when it stops.
type SenderLease interface {
	// Acquire blocks until this node holds destination's lease or ctx
	// ends (then it returns ctx's error). release gives the lease up.
	Acquire(ctx context.Context, destination string) (release func(), err error)
}

// LocalLease is the SenderLease of a single node: always granted (the
// queue runs one sender per destination in this process).
type LocalLease struct{}

// Acquire implements SenderLease.
func (LocalLease) Acquire(ctx context.Context, _ string) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return func() {}, nil
}
