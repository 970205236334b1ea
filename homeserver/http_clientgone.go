package homeserver

import (
	"context"
	"errors"

	"github.com/labstack/echo/v4"
)

// statusClientClosed is the status logged for a request whose client went
// away before the answer (nginx's 499 "client closed request"; not a
// status any client receives).
const statusClientClosed = 499

// clientGone reports whether a handler's error comes from the client
// having closed its request: the request's context is cancelled, so err is
// that cancellation or whatever a database, federation or wait call made
// of it (drivers do not all wrap context.Canceled).
func clientGone(c echo.Context, err error) bool {
	return err != nil && errors.Is(c.Request().Context().Err(), context.Canceled)
}
