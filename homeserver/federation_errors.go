package homeserver

import "errors"

// Federation errors. They stay inside the homeserver and become Matrix
// errors (or a log line) at the edge.
var (
	// ErrFederation wraps failures talking to another server.
	ErrFederation = errors.New("homeserver: federation")
	// ErrForbiddenAddress is returned when outbound federation would
	// connect to a loopback, private or otherwise internal address that
	// the allow-list does not admit.
	ErrForbiddenAddress = errors.New("homeserver: federation: address not allowed")
	// ErrBadServerKeys is returned for a key document that fails its checks
	// (wrong server name, expired, bad self-signature).
	ErrBadServerKeys = errors.New("homeserver: federation: server keys failed checks")
	// ErrBadPDU is returned for a PDU that fails size, format, hash,
	// signature or auth checks.
	ErrBadPDU = errors.New("homeserver: federation: PDU rejected")
)
