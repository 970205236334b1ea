package storage

import (
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"net/url"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsUnavailable reports whether err says the database could not be
// reached (a refused or reset connection, a connection cut mid-answer, a
// failed connect), as opposed to a query that failed on a database that
// answered. Callers answer such errors with "try again later" rather than
// as a bug; nothing was written.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	// An HTTP client's failure (federation, a remote server) wraps the
	// same network errors; it is not the database's.
	var ue *url.Error
	if errors.As(err, &ue) {
		return false
	}
	var ce *pgconn.ConnectError
	var ne *net.OpError
	return errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
