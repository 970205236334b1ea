package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5/pgconn"
	"io"
	"net"
	"net/url"
	"syscall"
	"testing"
)

// TestIsUnavailable: connection failures are "unavailable", wrapped or
// not; query errors, no rows and cancellations are not.
func TestIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"cut mid-answer", fmt.Errorf("storage: membership: %w", io.ErrUnexpectedEOF), true},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"reset", fmt.Errorf("x: %w", syscall.ECONNRESET), true},
		{"no rows", fmt.Errorf("storage: %w", sql.ErrNoRows), false},
		{"cancelled", fmt.Errorf("storage: %w", context.Canceled), false},
		{"other", errors.New("storage: duplicate key"), false},
		{"remote server", &url.Error{Op: "Get", URL: "https://remote", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, false},
	} {
		if got := IsUnavailable(tc.err); got != tc.want {
			t.Errorf("%s: IsUnavailable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// codedErr stands for a driver error carrying an SQLite result code, as
// modernc.org/sqlite's *Error does.
type codedErr int

func (c codedErr) Error() string { return fmt.Sprintf("sqlite code %d", int(c)) }
func (c codedErr) Code() int     { return int(c) }

// TestIsFull: SQLITE_FULL (also extended), PostgreSQL disk_full and
// ENOSPC are a full disk; other database errors are not.
func TestIsFull(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"sqlite full", fmt.Errorf("storage: commit: %w", codedErr(13)), true},
		{"sqlite constraint", fmt.Errorf("storage: %w", codedErr(19)), false},
		{"sqlite busy", codedErr(5), false},
		{"sqlite ioerr write", codedErr(778), false},
		{"postgres disk_full", fmt.Errorf("storage: %w", &pgconn.PgError{Code: "53100"}), true},
		{"postgres out of memory", &pgconn.PgError{Code: "53200"}, false},
		{"postgres unique", &pgconn.PgError{Code: "23505"}, false},
		{"enospc", fmt.Errorf("write: %w", syscall.ENOSPC), true},
		{"other", errors.New("storage: duplicate key"), false},
	} {
		if got := IsFull(tc.err); got != tc.want {
			t.Errorf("%s: IsFull(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
