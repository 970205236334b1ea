package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
