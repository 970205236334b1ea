package livekit

import "errors"

// Errors of the token service and the signalling server. Wrapped errors
// carry details; compare with errors.Is.
var (
	// ErrInvalidConfig means a constructor was given a config it cannot
	// run with.
	ErrInvalidConfig = errors.New("livekit: invalid config")
	// ErrBadRequest means a token request is malformed: not JSON, a
	// missing or wrongly typed field, or over the size limit.
	ErrBadRequest = errors.New("livekit: malformed token request")
	// ErrUnauthorized means the OpenID token was not confirmed by the
	// user's homeserver, or names another user than the request claims.
	ErrUnauthorized = errors.New("livekit: OpenID token not confirmed")
	// ErrNotInRoom means the user is not joined to the room, or this
	// server is not in it.
	ErrNotInRoom = errors.New("livekit: user not joined to the room")
	// ErrDelegation means the homeserver refused to take over the
	// delayed leave a token request named (no such delayed event of the
	// member's, or one too short to delegate).
	ErrDelegation = errors.New("livekit: delayed leave not delegated")
	// ErrInvalidToken means a LiveKit access token is missing, malformed,
	// expired, not signed with this server's key, or grants no room join.
	ErrInvalidToken = errors.New("livekit: invalid access token")
	// ErrProtocol means a client broke the signalling protocol: an
	// unparsable or oversized message, or too many messages.
	ErrProtocol = errors.New("livekit: signalling protocol error")
)
