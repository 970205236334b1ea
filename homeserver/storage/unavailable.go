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

// SQLite's result code for a full disk or database (SQLITE_FULL,
// https://sqlite.org/rescode.html#full) and PostgreSQL's SQLSTATE
// disk_full (class 53, "Insufficient Resources").
const (
	sqliteFull   = 13
	pgDiskFull   = "53100"
	sqliteIOErr  = 10
	sqliteCodeOf = 0xff // primary result code of an extended one
)

// IsFull reports whether err says the database could not write because
// its disk is full. Nothing was written (the transaction rolled back);
// callers answer "try again later", and writes succeed again once the
// operator frees space, without a restart.
func IsFull(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == pgDiskFull
	}
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		switch coded.Code() & sqliteCodeOf {
		case sqliteFull:
			return true
		case sqliteIOErr:
			// An I/O error on a write is a full disk when the system said
			// so (ENOSPC); other I/O errors are not this.
			return errors.Is(err, syscall.ENOSPC)
		}
	}
	return errors.Is(err, syscall.ENOSPC)
}
