package homeserver

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // The shared-secret registration MAC is HMAC-SHA1 by Synapse's definition.
	"encoding/hex"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// Shared-secret registration, as Synapse's admin API defines it
// (/_synapse/admin/v1/register): `switchboard register` (and Synapse's
// register_new_matrix_user) fetches a nonce, then posts the new account
// with an HMAC-SHA1 over nonce, username, password and admin flag, keyed
// with the registration shared secret.

// registrationNonceTTL is how long a nonce stays usable.
const registrationNonceTTL = 60 * time.Second

func errSharedSecretDisabled() *MatrixError {
	return merr(http.StatusBadRequest, "M_UNKNOWN", "Shared secret registration is not enabled")
}

// adminRegisterNonce implements GET /_synapse/admin/v1/register.
func (s *Server) adminRegisterNonce(c echo.Context) error {
	if s.cfg.RegistrationSharedSecret == "" {
		return errSharedSecretDisabled()
	}
	if err := s.abuse.nonce.allow(c.RealIP()); err != nil {
		return err
	}
	nonce := randomString(24)
	now := s.cfg.Now()
	if err := s.db.CreateRegistrationNonce(c.Request().Context(), nonce, now.UnixMilli(), now.Add(-registrationNonceTTL).UnixMilli(), maxRegistrationNonces); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"nonce": nonce})
}

// registrationMAC is the hex HMAC-SHA1 Synapse defines for shared-secret
// registration: over nonce NUL username NUL password NUL "admin" or
// "notadmin".
func registrationMAC(secret, nonce, username, password string, admin bool) []byte {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(nonce + "\x00" + username + "\x00" + password + "\x00"))
	if admin {
		m.Write([]byte("admin"))
	} else {
		m.Write([]byte("notadmin"))
	}
	return m.Sum(nil)
}

// adminRegister implements POST /_synapse/admin/v1/register. The nonce is
// spent by the attempt whether or not the MAC is right.
func (s *Server) adminRegister(c echo.Context) error {
	if s.cfg.RegistrationSharedSecret == "" {
		return errSharedSecretDisabled()
	}
	if err := s.loginLimit.allow("admin-register:" + c.RealIP()); err != nil {
		return err
	}
	var req struct {
		Nonce       string  `json:"nonce"`
		Username    string  `json:"username"`
		Password    string  `json:"password"`
		Admin       bool    `json:"admin"`
		MAC         string  `json:"mac"`
		Displayname *string `json:"displayname"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	switch {
	case req.Nonce == "":
		return errMissingParam("nonce is required")
	case req.Username == "":
		return errMissingParam("username is required")
	case req.Password == "":
		return errMissingParam("password is required")
	case req.MAC == "":
		return errMissingParam("mac is required")
	}
	ctx := c.Request().Context()
	if err := s.db.ConsumeRegistrationNonce(ctx, req.Nonce, s.cfg.Now().Add(-registrationNonceTTL).UnixMilli()); err != nil {
		return merr(http.StatusBadRequest, "M_UNKNOWN", "unrecognised nonce")
	}
	if strings.ContainsRune(req.Username, 0) || strings.ContainsRune(req.Password, 0) {
		return errInvalidParam("username and password must not contain NUL")
	}
	got, err := hex.DecodeString(req.MAC)
	if err != nil || !hmac.Equal(got, registrationMAC(s.cfg.RegistrationSharedSecret, req.Nonce, req.Username, req.Password, req.Admin)) {
		s.log.Info("shared-secret registration refused", "reason", "bad mac", "username", req.Username)
		return errForbidden("HMAC incorrect")
	}
	local := strings.ToLower(req.Username)
	if !validLocalpart(local) {
		return merr(http.StatusBadRequest, "M_INVALID_USERNAME", "User ID may only contain a-z, 0-9, and . _ = - / +")
	}
	if len(req.Password) > 512 {
		return merr(http.StatusBadRequest, "M_WEAK_PASSWORD", "A password of 1 to 512 characters is required")
	}
	if req.Displayname != nil && utf8.RuneCountInString(*req.Displayname) > maxDisplayNameLen {
		return errInvalidParam("displayname is longer than %d characters", maxDisplayNameLen)
	}
	if req.Displayname != nil && *req.Displayname != "" {
		// createAccount writes the response; set the displayname just
		// before its success header goes out, so the client never sees
		// the account without it.
		userID, name := "@"+local+":"+s.cfg.ServerName, *req.Displayname
		c.Response().Before(func() {
			if c.Response().Status != http.StatusOK {
				return
			}
			if err := s.db.SetDisplayName(ctx, userID, name); err != nil {
				s.log.Error("shared-secret registration: set displayname", "user_id", userID, "err", err)
			}
		})
	}
	return s.createAccount(c, local, req.Password, req.Admin, "", "", false)
}
