package push

import "errors"

var (
	// ErrConfig is a Config that cannot work (no database, bad retry
	// bounds).
	ErrConfig = errors.New("push: bad configuration")
	// errRetry marks a gateway failure worth retrying (unreachable, 5xx,
	// 429).
	errRetry = errors.New("push: gateway unavailable")
)
