package homeserver

import (
	"net/http"
	"time"
)

// databaseRetryAfter is how long a client is asked to wait when the
// database cannot be reached.
const databaseRetryAfter = 5 * time.Second

// errDatabaseUnavailable is the answer while the database cannot be
// reached: 503 with Retry-After (RFC 9110 section 10.2.3) and
// retry_after_ms, so clients retry instead of treating it as a bug; the
// request changed nothing.
func errDatabaseUnavailable() *MatrixError {
	e := merr(http.StatusServiceUnavailable, "M_UNKNOWN", "the server cannot reach its database; retry later")
	e.RetryAfterMS = databaseRetryAfter.Milliseconds()
	return e
}

// errDiskFull is the answer to a write the database could not keep
// because its disk is full: 503 with Retry-After, as for an unreachable
// database; nothing was written.
func errDiskFull() *MatrixError {
	e := merr(http.StatusServiceUnavailable, "M_UNKNOWN", "the server's disk is full; retry later")
	e.RetryAfterMS = databaseRetryAfter.Milliseconds()
	return e
}
