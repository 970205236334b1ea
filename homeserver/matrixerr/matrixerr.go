// Package matrixerr is the Matrix error that the homeserver's HTTP edges
// answer with (spec: Client-Server API, "Standard error response";
// Server-Server API answers use the same shape): an HTTP status, an errcode
// and a message. The client API and the federation API both return it from
// their handlers and from the calls one makes for the other, so it lives in
// a package of its own that imports nothing of ours.
package matrixerr

import (
	"fmt"
	"net/http"
)

// Error is an error in the Matrix API's own terms. Handlers return it; the
// HTTP edge renders it as {"errcode", "error", ...Extra}.
type Error struct {
	Status       int    `json:"-"`
	ErrCode      string `json:"errcode"`
	Message      string `json:"error"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
	// Extra fields merged into the body (e.g. UIA flows, soft_logout,
	// room_version).
	Extra map[string]any `json:"-"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.ErrCode, e.Message) }

// WithExtra sets the body field k to v and returns e.
func (e *Error) WithExtra(k string, v any) *Error {
	if e.Extra == nil {
		e.Extra = map[string]any{}
	}
	e.Extra[k] = v
	return e
}

// New is an error with status, errcode code and a formatted message.
func New(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, ErrCode: code, Message: fmt.Sprintf(format, args...)}
}

// BadJSON is 400 M_BAD_JSON.
func BadJSON(format string, args ...any) *Error {
	return New(http.StatusBadRequest, "M_BAD_JSON", format, args...)
}

// NotJSON is 400 M_NOT_JSON.
func NotJSON(format string, args ...any) *Error {
	return New(http.StatusBadRequest, "M_NOT_JSON", format, args...)
}

// Forbidden is 403 M_FORBIDDEN.
func Forbidden(format string, args ...any) *Error {
	return New(http.StatusForbidden, "M_FORBIDDEN", format, args...)
}

// NotFound is 404 M_NOT_FOUND.
func NotFound(format string, args ...any) *Error {
	return New(http.StatusNotFound, "M_NOT_FOUND", format, args...)
}

// InvalidParam is 400 M_INVALID_PARAM.
func InvalidParam(format string, args ...any) *Error {
	return New(http.StatusBadRequest, "M_INVALID_PARAM", format, args...)
}

// MissingParam is 400 M_MISSING_PARAM.
func MissingParam(format string, args ...any) *Error {
	return New(http.StatusBadRequest, "M_MISSING_PARAM", format, args...)
}

// UnknownToken is 401 M_UNKNOWN_TOKEN.
func UnknownToken(format string, args ...any) *Error {
	return New(http.StatusUnauthorized, "M_UNKNOWN_TOKEN", format, args...)
}

// Unauthorized is 401 M_UNAUTHORIZED (a federation request whose X-Matrix
// signature does not verify).
func Unauthorized(format string, args ...any) *Error {
	return New(http.StatusUnauthorized, "M_UNAUTHORIZED", format, args...)
}

// TooLarge is 413 M_TOO_LARGE.
func TooLarge(format string, args ...any) *Error {
	return New(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", format, args...)
}

// Unknown is 500 M_UNKNOWN.
func Unknown(format string, args ...any) *Error {
	return New(http.StatusInternalServerError, "M_UNKNOWN", format, args...)
}
