package homeserver

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
)

var (
	// ErrConfig wraps every configuration error returned by New.
	ErrConfig = errors.New("homeserver: bad config")
)

// MatrixError is an error in the client-server API's own terms: an HTTP
// status, an errcode and a message (spec: Client-Server API, "Standard
// error response"). Handlers return it; the HTTP edge renders it.
type MatrixError struct {
	Status       int    `json:"-"`
	ErrCode      string `json:"errcode"`
	Message      string `json:"error"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
	// Extra fields merged into the body (e.g. UIA flows, soft_logout).
	Extra map[string]any `json:"-"`
}

func (e *MatrixError) Error() string { return fmt.Sprintf("%s: %s", e.ErrCode, e.Message) }

func merr(status int, code, format string, args ...any) *MatrixError {
	return &MatrixError{Status: status, ErrCode: code, Message: fmt.Sprintf(format, args...)}
}

func errBadJSON(format string, args ...any) *MatrixError {
	return merr(http.StatusBadRequest, "M_BAD_JSON", format, args...)
}
func errNotJSON(format string, args ...any) *MatrixError {
	return merr(http.StatusBadRequest, "M_NOT_JSON", format, args...)
}
func errForbidden(format string, args ...any) *MatrixError {
	return merr(http.StatusForbidden, "M_FORBIDDEN", format, args...)
}
func errNotFound(format string, args ...any) *MatrixError {
	return merr(http.StatusNotFound, "M_NOT_FOUND", format, args...)
}
func errInvalidParam(format string, args ...any) *MatrixError {
	return merr(http.StatusBadRequest, "M_INVALID_PARAM", format, args...)
}
func errMissingParam(format string, args ...any) *MatrixError {
	return merr(http.StatusBadRequest, "M_MISSING_PARAM", format, args...)
}
func errUnknownToken(format string, args ...any) *MatrixError {
	return merr(http.StatusUnauthorized, "M_UNKNOWN_TOKEN", format, args...)
}
func errTooLarge(format string, args ...any) *MatrixError {
	return merr(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", format, args...)
}
func errUnknown(format string, args ...any) *MatrixError {
	return merr(http.StatusInternalServerError, "M_UNKNOWN", format, args...)
}

// asMatrixError is the one place where the typed errors of the layers
// below the HTTP edge become Matrix errors (spec: Client-Server API,
// "Standard error response"): a *MatrixError as it is, a refusal by rooms
// by its kind. It reports false for anything else (an internal error).
func asMatrixError(err error) (*MatrixError, bool) {
	var me *MatrixError
	if errors.As(err, &me) {
		return me, true
	}
	var re *rooms.Error
	if !errors.As(err, &re) {
		return nil, false
	}
	msg := re.Detail()
	switch {
	case errors.Is(err, rooms.ErrForbidden), errors.Is(err, rooms.ErrRejected):
		return errForbidden("%s", msg), true
	case errors.Is(err, rooms.ErrNotFound):
		return errNotFound("%s", msg), true
	case errors.Is(err, rooms.ErrUnsupportedVersion):
		return merr(http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION", "%s", msg), true
	case errors.Is(err, rooms.ErrTooLarge):
		return errTooLarge("%s", msg), true
	case errors.Is(err, rooms.ErrMissingParam):
		return errMissingParam("%s", msg), true
	default: // rooms.ErrBadEvent
		return errBadJSON("%s", msg), true
	}
}
