package homeserver

import (
	"errors"
	"net/http"

	"github.com/switchboard-chat/switchboard/homeserver/matrixerr"
	"github.com/switchboard-chat/switchboard/homeserver/rooms"
)

var (
	// ErrConfig wraps every configuration error returned by New.
	ErrConfig = errors.New("homeserver: bad config")
)

// MatrixError is an error in the Matrix API's own terms (matrixerr):
// handlers return it; the HTTP edge renders it.
type MatrixError = matrixerr.Error

func merr(status int, code, format string, args ...any) *MatrixError {
	return matrixerr.New(status, code, format, args...)
}

func errBadJSON(format string, args ...any) *MatrixError { return matrixerr.BadJSON(format, args...) }
func errNotJSON(format string, args ...any) *MatrixError { return matrixerr.NotJSON(format, args...) }
func errForbidden(format string, args ...any) *MatrixError {
	return matrixerr.Forbidden(format, args...)
}
func errNotFound(format string, args ...any) *MatrixError { return matrixerr.NotFound(format, args...) }
func errInvalidParam(format string, args ...any) *MatrixError {
	return matrixerr.InvalidParam(format, args...)
}
func errMissingParam(format string, args ...any) *MatrixError {
	return matrixerr.MissingParam(format, args...)
}
func errUnknownToken(format string, args ...any) *MatrixError {
	return matrixerr.UnknownToken(format, args...)
}
func errTooLarge(format string, args ...any) *MatrixError { return matrixerr.TooLarge(format, args...) }
func errUnknown(format string, args ...any) *MatrixError  { return matrixerr.Unknown(format, args...) }

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
