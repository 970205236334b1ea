package homeserver

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // TURN REST passwords are HMAC-SHA1 by definition.
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
)

// unstableFeatures are /versions' unstable_features (spec: "GET
// /_matrix/client/versions"): simplified sliding sync and MatrixRTC's.
func unstableFeatures() map[string]bool {
	f := rtcUnstableFeatures()
	f["org.matrix.simplified_msc3575"] = true
	return f
}

func (s *Server) versions(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{
		"versions": []string{"r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12"},
		// Simplified sliding sync (MSC4186, slidingsync*.go), which
		// Element X requires; MatrixRTC's delayed and sticky events and
		// foci discovery (rtc_discovery.go).
		"unstable_features": unstableFeatures(),
	})
}

// turnServer implements GET /voip/turnServer (spec: Client-Server API,
// "Voice over IP", "Server behaviour"): TURN REST credentials
// (draft-uberti-behave-turn-rest-00 §2.2) whose username is
// "<unix expiry>:<user ID>" and whose password is the base64 HMAC-SHA1 of
// that username keyed with the secret the TURN relay checks. With no TURN
// URIs configured the answer is {}, which clients read as "no TURN".
func (s *Server) turnServer(c echo.Context) error {
	t := s.cfg.TURN
	if len(t.URIs) == 0 {
		return c.JSON(http.StatusOK, struct{}{})
	}
	username, password := turnRESTCredentials(t.SharedSecret, device(c).UserID, s.cfg.Now().Add(t.TTL).Unix())
	return c.JSON(http.StatusOK, map[string]any{
		"username": username,
		"password": password,
		"uris":     t.URIs,
		"ttl":      int64(t.TTL.Seconds()),
	})
}

// turnRESTCredentials returns the TURN REST username and password for user,
// expiring at the Unix time expiry.
func turnRESTCredentials(secret, user string, expiry int64) (username, password string) {
	username = strconv.FormatInt(expiry, 10) + ":" + user
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// capabilities implements GET /capabilities (spec: Client-Server API,
// "Capabilities negotiation").
func (s *Server) capabilities(c echo.Context) error {
	enabled := func(b bool) map[string]bool { return map[string]bool{"enabled": b} }
	return c.JSON(http.StatusOK, map[string]any{"capabilities": map[string]any{
		"m.change_password": enabled(true),
		"m.room_versions": map[string]any{
			"default":   "11",
			"available": map[string]string{"10": "stable", "11": "stable"},
		},
		"m.set_displayname": enabled(true),
		"m.set_avatar_url":  enabled(true),
		"m.3pid_changes":    enabled(false),
	}})
}
