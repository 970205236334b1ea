package sync

import "errors"

// Errors of the sync package.
var (
	// ErrConfig: New was given a Config with a missing dependency.
	ErrConfig = errors.New("sync: bad config")
	// ErrBadToken: a since token this server did not write.
	ErrBadToken = errors.New("sync: invalid since token")
)
