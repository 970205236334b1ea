package homeserver

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// newRouter builds the echo instance serving the client-server API.
func (s *Server) newRouter() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// The client address that per-IP limits count (login_limits.go):
	// X-Forwarded-For is believed only from a loopback, link-local or
	// private peer (a reverse proxy); anyone else cannot choose their
	// address by sending the header.
	e.IPExtractor = echo.ExtractIPFromXFFHeader()
	e.HTTPErrorHandler = s.renderError
	e.Pre(middleware.RequestID())
	e.Use(s.logRequests)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		s.log.Error("handler panicked", "err", err, "path", c.Path(), "stack", string(stack))
		return err
	}}))
	// CORS for browser clients (spec: Client-Server API, "Web Browser Clients").
	e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOrigins: []string{"*"},
		AllowMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions},
		AllowHeaders: []string{"X-Requested-With", "Content-Type", "Authorization"},
	}))
	e.Use(s.limitBody)
	s.routes(e)
	return e
}

// limitBody refuses bodies over MaxRequestBytes with 413 M_TOO_LARGE.
func (s *Server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength > s.cfg.MaxRequestBytes {
			return errTooLarge("request body is larger than %d bytes", s.cfg.MaxRequestBytes)
		}
		req.Body = http.MaxBytesReader(c.Response(), req.Body, s.cfg.MaxRequestBytes)
		return next(c)
	}
}

func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := s.cfg.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		req := c.Request()
		status := c.Response().Status
		level := slog.LevelDebug
		if status >= 500 {
			level = slog.LevelError
		}
		s.log.Log(req.Context(), level, "request",
			"method", req.Method, "path", c.Path(), "status", status,
			"duration_ms", float64(s.cfg.Now().Sub(start).Microseconds())/1000,
			"request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		return nil
	}
}

// renderError turns any handler error into a Matrix error body.
func (s *Server) renderError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	me, isMatrix := asMatrixError(err)
	var he *echo.HTTPError
	var mbe *http.MaxBytesError
	switch {
	case isMatrix:
	case errors.As(err, &mbe):
		me = errTooLarge("request body is larger than %d bytes", mbe.Limit)
	case errors.As(err, &he):
		switch he.Code {
		case http.StatusNotFound:
			me = merr(http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
		case http.StatusMethodNotAllowed:
			me = merr(http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "Method not allowed")
		case http.StatusRequestEntityTooLarge:
			me = errTooLarge("request body too large")
		default:
			me = merr(he.Code, "M_UNKNOWN", "%v", he.Message)
		}
	case clientGone(c, err):
		// The client closed the request (a /sync long-poll it gave up
		// on): nobody reads the answer and nothing went wrong here.
		s.log.Debug("client closed request", "err", err, "path", c.Path(), "status", statusClientClosed,
			"request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		c.Response().WriteHeader(statusClientClosed)
		return
	case storage.IsFull(err):
		// The operator must act (free space); the client retries.
		s.log.Error("database disk full: writes are refused until space is freed", "err", err, "path", c.Path(),
			"request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		me = errDiskFull()
	case storage.IsUnavailable(err):
		s.log.Warn("database unavailable", "err", err, "path", c.Path(), "request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		me = errDatabaseUnavailable()
	default:
		s.log.Error("internal error", "err", err, "path", c.Path(), "request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		me = errUnknown("Internal server error")
	}
	body := map[string]any{}
	if me.ErrCode != "" {
		body["errcode"], body["error"] = me.ErrCode, me.Message
	}
	if me.RetryAfterMS > 0 {
		body["retry_after_ms"] = me.RetryAfterMS
		c.Response().Header().Set("Retry-After", itoa((me.RetryAfterMS+999)/1000))
	}
	for k, v := range me.Extra {
		body[k] = v
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(me.Status)
		return
	}
	_ = c.JSON(me.Status, body)
}

// readJSON decodes a request body into v, answering M_NOT_JSON for bodies
// that are not JSON and M_BAD_JSON for JSON of the wrong shape. An empty
// body is read as {}.
func readJSON(c echo.Context, v any) error {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge("request body is larger than %d bytes", mbe.Limit)
		}
		return errBadJSON("could not read body: %v", err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		return errNotJSON("Content not JSON.")
	}
	// Duplicate keys, lone surrogates and invalid UTF-8 read differently
	// in different parsers: refused in every body (clientjson.go).
	if err := checkClientJSON(body); err != nil {
		return errBadJSON("%v", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errBadJSON("%v", err)
	}
	return nil
}

// readContent reads a body that must be a JSON object whose numbers are
// canonical (event content), returning its raw bytes.
func readContent(c echo.Context) (json.RawMessage, error) {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge("request body is larger than %d bytes", mbe.Limit)
		}
		return nil, errBadJSON("could not read body: %v", err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		return nil, errNotJSON("Content not JSON.")
	}
	if err := checkCanonicalJSON(body); err != nil {
		return nil, errBadJSON("%v", err)
	}
	return body, nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
