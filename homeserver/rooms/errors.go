package rooms

import (
	"errors"
	"fmt"
)

// Refusals. Each is returned wrapped in an *Error that carries the detail
// a client may read; test with errors.Is.
var (
	// ErrForbidden: the auth rules (or a rule of this package, such as
	// who may redact) refuse a local event.
	ErrForbidden = errors.New("rooms: forbidden")
	// ErrNotFound: the room or an event it names is unknown here.
	ErrNotFound = errors.New("rooms: not found")
	// ErrUnsupportedVersion: the room's version is not one this server
	// implements.
	ErrUnsupportedVersion = errors.New("rooms: unsupported room version")
	// ErrBadEvent: the event is malformed, or a remote event cannot be
	// placed (unknown prev or auth events).
	ErrBadEvent = errors.New("rooms: bad event")
	// ErrMissingParam: a local event lacks a field its type needs.
	ErrMissingParam = errors.New("rooms: missing field")
	// ErrTooLarge: the event is larger than the spec allows.
	ErrTooLarge = errors.New("rooms: event too large")
	// ErrRejected: a remote event whose hash and signatures are good fails
	// the auth rules against its auth events or the state before it
	// (spec: Server-Server API, "Rejection"). The caller records it, so
	// that events citing it are rejected in turn.
	ErrRejected = errors.New("rooms: event rejected")
)

// Error is a refusal of kind (one of the Err* values) with detail.
type Error struct {
	kind   error
	detail string
	// eventID names the refused event when it parsed far enough to have
	// one ("" otherwise).
	eventID string
}

func (e *Error) Error() string { return e.kind.Error() + ": " + e.detail }

// Unwrap returns the kind, for errors.Is.
func (e *Error) Unwrap() error { return e.kind }

// Detail is the message without the package prefix: what a client reads.
func (e *Error) Detail() string { return e.detail }

// EventID is the ID of the refused event, "" when it had none yet (a
// PDU refused before it parsed).
func (e *Error) EventID() string { return e.eventID }

// RefusedID is the event ID that a refusal in err's chain names, or "".
func RefusedID(err error) string {
	var re *Error
	if errors.As(err, &re) {
		return re.eventID
	}
	return ""
}

func refuseEvent(eventID string, kind error, format string, args ...any) *Error {
	e := refuse(kind, format, args...)
	e.eventID = eventID
	return e
}

func refuse(kind error, format string, args ...any) *Error {
	return &Error{kind: kind, detail: fmt.Sprintf(format, args...)}
}

// Reject is a rejection (ErrRejected) found outside this package's own
// steps: a remote event that the state a server served refuses.
func Reject(format string, args ...any) error { return refuse(ErrRejected, format, args...) }
