package federation

import "errors"

// Federation errors. They become Matrix errors (or a log line) at the
// HTTP edge.
var (
	// ErrConfig wraps every configuration error returned by New.
	ErrConfig = errors.New("federation: bad config")
	// ErrFederation wraps failures talking to another server.
	ErrFederation = errors.New("federation: request failed")
	// ErrForbiddenAddress is returned when outbound federation would
	// connect to a loopback, private or otherwise internal address that
	// the allow-list does not admit.
	ErrForbiddenAddress = errors.New("federation: address not allowed")
	// ErrBadServerKeys is returned for a key document that fails its checks
	// (wrong server name, expired, bad self-signature).
	ErrBadServerKeys = errors.New("federation: server keys failed checks")
	// ErrBadPDU is returned for a PDU that fails size, format, hash,
	// signature or auth checks.
	ErrBadPDU = errors.New("federation: PDU rejected")
)
