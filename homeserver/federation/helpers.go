package federation

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/matrixerr"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Short names for the Matrix errors the handlers answer with.
func merr(status int, code, format string, args ...any) *matrixerr.Error {
	return matrixerr.New(status, code, format, args...)
}
func errBadJSON(format string, args ...any) *matrixerr.Error {
	return matrixerr.BadJSON(format, args...)
}
func errForbidden(format string, args ...any) *matrixerr.Error {
	return matrixerr.Forbidden(format, args...)
}
func errNotFound(format string, args ...any) *matrixerr.Error {
	return matrixerr.NotFound(format, args...)
}
func errInvalidParam(format string, args ...any) *matrixerr.Error {
	return matrixerr.InvalidParam(format, args...)
}
func errTooLarge(format string, args ...any) *matrixerr.Error {
	return matrixerr.TooLarge(format, args...)
}
func errUnknown(format string, args ...any) *matrixerr.Error {
	return matrixerr.Unknown(format, args...)
}
func errUnknownToken(format string, args ...any) *matrixerr.Error {
	return matrixerr.UnknownToken(format, args...)
}
func errUnauthorized(format string, args ...any) *matrixerr.Error {
	return matrixerr.Unauthorized(format, args...)
}

// splitUserID splits "@local:server" (spec: Appendices, "User Identifiers").
func splitUserID(id string) (local, server string, ok bool) {
	if !strings.HasPrefix(id, "@") {
		return "", "", false
	}
	local, server, ok = strings.Cut(id[1:], ":")
	return local, server, ok && local != "" && server != ""
}

// param returns a path parameter, percent-decoded (echo hands out the raw
// path when the request had escapes, as room IDs and event IDs do).
func param(c echo.Context, name string) string {
	v := c.Param(name)
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

// readJSON decodes an unsigned request body into v (the key query):
// M_NOT_JSON for a body that is not JSON, M_BAD_JSON for one of the wrong
// shape or one the strict request rules refuse. An empty body is {}.
func (f *Service) readJSON(c echo.Context, v any) error {
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
		return matrixerr.NotJSON("Content not JSON.")
	}
	if err := f.checks.Request(body); err != nil {
		return errBadJSON("%v", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errBadJSON("%v", err)
	}
	return nil
}

// randomString returns n random bytes, base64url without padding.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// membershipOfEvent is a stored member event's content.membership.
func membershipOfEvent(e storage.Event) string {
	var ev struct {
		Content struct {
			Membership string `json:"membership"`
		} `json:"content"`
	}
	_ = json.Unmarshal(e.JSON, &ev)
	return ev.Content.Membership
}

// Presence values (spec: Client-Server API, "Presence") and the bound of
// a status message, in bytes.
const (
	presenceOnline      = "online"
	presenceUnavailable = "unavailable"
	presenceOffline     = "offline"
	maxStatusMsg        = 1024
)

func validPresence(p string) bool {
	return p == presenceOnline || p == presenceUnavailable || p == presenceOffline
}

// DirectoryPage reads a room directory request's limit and since: from
// the query, or for POST from the body, which decode reads. The client
// API's /publicRooms reads its page the same way.
func DirectoryPage(c echo.Context, decode func(any) error) (int, string, error) {
	limit, since := 100, c.QueryParam("since")
	if l := c.QueryParam("limit"); l != "" {
		if n, err := strconv.Atoi(l); err == nil && n > 0 {
			limit = min(n, 500)
		}
	}
	if c.Request().Method == http.MethodPost {
		var req struct {
			Limit int    `json:"limit"`
			Since string `json:"since"`
		}
		if err := decode(&req); err != nil {
			return 0, "", err
		}
		if req.Limit > 0 {
			limit = min(req.Limit, 500)
		}
		if req.Since != "" {
			since = req.Since
		}
	}
	return limit, since, nil
}
