package signalling

import "errors"

// Errors returned by the focus. Wrapped errors carry details; compare with
// errors.Is.
var (
	// ErrInvalidConfig means NewFocus was given a FocusConfig it cannot
	// run with.
	ErrInvalidConfig = errors.New("signalling: invalid config")
	// ErrClosed means the focus is closed.
	ErrClosed = errors.New("signalling: focus closed")
	// ErrMalformed means a to-device or data-channel message could not be
	// parsed or breaks a limit (size, missing or wrongly typed field).
	ErrMalformed = errors.New("signalling: malformed message")
	// ErrTooLarge means a message is over the configured size limit.
	ErrTooLarge = errors.New("signalling: message too large")
	// ErrNotAllowed means the sender may not join the conference: not
	// joined to the room, no live call membership for that device and
	// session, or no such call in the room.
	ErrNotAllowed = errors.New("signalling: sender not in the call")
	// ErrRateLimited means the sender sent invites faster than allowed.
	ErrRateLimited = errors.New("signalling: too many invites")
)
