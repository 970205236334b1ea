package homeserver

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// openIDTokenTTL is how long an OpenID token is good for.
const openIDTokenTTL = time.Hour

// requestOpenIDToken implements POST /user/{userId}/openid/request_token
// (spec: Client-Server API, "OpenID"): a token a third party (an
// integration manager, the LiveKit JWT service) can exchange for the
// user's ID through the federation API's /openid/userinfo. Only the hash
// of the token is stored.
func (s *Server) requestOpenIDToken(c echo.Context) error {
	userID := param(c, "userId")
	if userID != device(c).UserID {
		return errForbidden("You cannot request OpenID tokens for other users")
	}
	var req map[string]any
	if err := readJSON(c, &req); err != nil {
		return err
	}
	tok := "sbo_" + randomString(32)
	now := s.cfg.Now()
	if err := s.db.CreateOpenIDToken(c.Request().Context(), hashToken(tok), userID,
		now.Add(openIDTokenTTL).UnixMilli(), now.UnixMilli()); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{
		"access_token":       tok,
		"token_type":         "Bearer",
		"matrix_server_name": s.cfg.ServerName,
		"expires_in":         int64(openIDTokenTTL.Seconds()),
	})
}

// OpenIDUserInfo resolves an OpenID token issued by
// /user/{userId}/openid/request_token to its user ID, for the federation
// endpoint GET /_matrix/federation/v1/openid/userinfo (spec: Server-Server
// API, "OpenID") and the LiveKit JWT service. An unknown or expired token
// gives ErrUnknownOpenIDToken (the federation endpoint answers it with 401
// M_UNKNOWN_TOKEN).
func (s *Server) OpenIDUserInfo(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", ErrUnknownOpenIDToken
	}
	userID, err := s.db.OpenIDToken(ctx, hashToken(token), s.nowMS())
	if errors.Is(err, storage.ErrNotFound) {
		return "", ErrUnknownOpenIDToken
	}
	if err != nil {
		return "", err
	}
	return userID, nil
}
