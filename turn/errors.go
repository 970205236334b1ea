package turn

import "errors"

// Errors returned by New and by the relay. Wrap them with %w; compare with
// errors.Is.
var (
	// ErrNoRealm means Config.Realm is empty.
	ErrNoRealm = errors.New("turn: realm is required")
	// ErrNoRelayIP means Config.RelayIP is missing or not a usable address.
	ErrNoRelayIP = errors.New("turn: relay IP is required and must be a unicast address")
	// ErrBadRelayBind means Config.RelayBindAddress is not an IP address.
	ErrBadRelayBind = errors.New("turn: relay bind address is not an IP address")
	// ErrBadPortRange means RelayPortMin > RelayPortMax.
	ErrBadPortRange = errors.New("turn: relay port range is empty")
	// ErrBadCIDR means an allow or deny list entry does not parse.
	ErrBadCIDR = errors.New("turn: bad CIDR in peer policy")
	// ErrBadOwnAddr means an entry of Config.OwnAddrs is not a valid address.
	ErrBadOwnAddr = errors.New("turn: bad own listener address")
	// ErrNoAuth means neither a shared secret nor static users are configured.
	ErrNoAuth = errors.New("turn: no credentials configured (shared secret or static users)")
	// ErrBadQuota means a quota, TTL or rate is negative.
	ErrBadQuota = errors.New("turn: quotas, TTL and rates must not be negative")
	// ErrNoSockets means New was given neither packet conns nor listeners.
	ErrNoSockets = errors.New("turn: no sockets to serve")
	// ErrBadUsername means a TURN REST username is not "<unix-expiry>:<user>".
	ErrBadUsername = errors.New("turn: malformed TURN REST username")
	// ErrCredentialExpired means a TURN REST username's expiry has passed.
	ErrCredentialExpired = errors.New("turn: credential expired")
	// ErrCredentialTooLong means a TURN REST username expires further ahead
	// than Config.MaxTTL allows.
	ErrCredentialTooLong = errors.New("turn: credential lifetime exceeds the maximum TTL")
	// ErrUnknownUser means the username is neither a static user nor a TURN
	// REST username (or REST auth is off).
	ErrUnknownUser = errors.New("turn: unknown user")
	// ErrPeerDenied means the peer policy refused a peer address.
	ErrPeerDenied = errors.New("turn: peer address refused by policy")
	// ErrQuota means a user or total allocation quota is reached.
	ErrQuota = errors.New("turn: allocation quota reached")
)

// ErrWrongRealm means a request named a realm other than Config.Realm.
var ErrWrongRealm = errors.New("turn: wrong realm")

// errBadFrame means a TCP/TLS client sent bytes that are neither STUN nor
// ChannelData, or a frame too long; the connection is closed.
var errBadFrame = errors.New("turn: stream does not carry TURN frames")

// ErrClosed means the server is closing and opens no more relay sockets.
var ErrClosed = errors.New("turn: server closed")

// errUnreachable means a datagram's destination is not of the sending
// socket's address family (an IPv6 peer from an IPv4 socket).
var errUnreachable = errors.New("turn: destination not reachable from this socket")
