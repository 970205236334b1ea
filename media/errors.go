package media

import "errors"

// Errors returned by the parsers of this package. They are returned, never
// panicked, whatever the input: every byte they read comes from the network.
var (
	// ErrShortPacket means a payload or header extension ended before a
	// field its own flags announce.
	ErrShortPacket = errors.New("media: packet too short")
	// ErrInvalidExtension means a header extension has the wrong length.
	ErrInvalidExtension = errors.New("media: invalid header extension")
)
