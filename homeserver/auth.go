package homeserver

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

const deviceKey = "sb.device"

// requireAuth resolves the access token (Authorization: Bearer, or the
// deprecated access_token query parameter) to a device, or answers 401
// M_MISSING_TOKEN / M_UNKNOWN_TOKEN (spec: Client-Server API, "Using access
// tokens").
func (s *Server) requireAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		tok := ""
		if h := c.Request().Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
			tok = strings.TrimPrefix(h, "Bearer ")
		} else {
			tok = c.QueryParam("access_token")
		}
		if tok == "" {
			return merr(401, "M_MISSING_TOKEN", "Missing access token")
		}
		d, err := s.db.DeviceByToken(c.Request().Context(), hashToken(tok))
		if errors.Is(err, storage.ErrNotFound) {
			e := errUnknownToken("Unknown or expired access token")
			e.Extra = map[string]any{"soft_logout": false}
			return e
		}
		if err != nil {
			return err
		}
		c.Set(deviceKey, d)
		return next(c)
	}
}

// device returns the authenticated device of a request behind requireAuth.
func device(c echo.Context) storage.Device {
	d, _ := c.Get(deviceKey).(storage.Device)
	return d
}

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// randomString returns n random bytes, base64url without padding.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// randomID returns an identifier of n letters, for device IDs and the like.
func randomID(n int) string {
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}
