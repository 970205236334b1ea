package homeserver

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// bcryptCost is the password hashing cost: about 50 ms a hash here.
const bcryptCost = 10

type authDict struct {
	Type       string `json:"type"`
	Session    string `json:"session"`
	Token      string `json:"token"`
	Password   string `json:"password"`
	User       string `json:"user"`
	Identifier struct {
		Type string `json:"type"`
		User string `json:"user"`
	} `json:"identifier"`
}

// uiaRequired is the 401 that starts user-interactive authentication (spec:
// Client-Server API, "User-Interactive Authentication API").
func uiaRequired(stage, session string, completed []string, why *MatrixError) *MatrixError {
	e := &MatrixError{Status: http.StatusUnauthorized}
	if why != nil {
		e.ErrCode, e.Message = why.ErrCode, why.Message
	}
	if completed == nil {
		completed = []string{}
	}
	e.Extra = map[string]any{
		"flows":     []map[string]any{{"stages": []string{stage}}},
		"params":    map[string]any{},
		"session":   session,
		"completed": completed,
	}
	return e
}

// renderUIA writes a UIA 401 whose body has no errcode unless there was a
// failed attempt.
func isUIA(e *MatrixError) bool {
	return e.Status == http.StatusUnauthorized && e.Extra["flows"] != nil
}

// checkPasswordUIA completes a one-stage m.login.password UIA for userID,
// as device deletion and password change need.
func (s *Server) checkPasswordUIA(c echo.Context, auth *authDict, userID string) error {
	if auth == nil || auth.Type == "" {
		return uiaRequired("m.login.password", randomString(12), nil, nil)
	}
	if auth.Type != "m.login.password" {
		return uiaRequired("m.login.password", auth.Session, nil, errForbidden("unsupported auth type %q", auth.Type))
	}
	who := auth.Identifier.User
	if who == "" {
		who = auth.User
	}
	if who != "" && s.qualify(who) != userID {
		return uiaRequired("m.login.password", auth.Session, nil, errForbidden("Invalid username or password"))
	}
	if err := s.loginLimit.allow("uia:" + userID); err != nil {
		return err
	}
	u, err := s.db.UserByID(c.Request().Context(), userID)
	if err != nil {
		return err
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(auth.Password)) != nil {
		return uiaRequired("m.login.password", auth.Session, nil, errForbidden("Invalid username or password"))
	}
	return nil
}

// qualify turns "alice" or "@alice:server" into a full, lower-cased user ID.
func (s *Server) qualify(user string) string {
	user = strings.ToLower(user)
	if strings.HasPrefix(user, "@") {
		return user
	}
	return "@" + user + ":" + strings.ToLower(s.cfg.ServerName)
}

// validLocalpart checks the spec's user ID grammar for new accounts
// (spec: Appendices, "User Identifiers": a-z 0-9 . _ = - / +).
func validLocalpart(l string) bool {
	if l == "" || len(l) > 200 {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("._=-/+", c) >= 0) {
			return false
		}
	}
	return true
}

type registerRequest struct {
	Username                 string    `json:"username"`
	Password                 string    `json:"password"`
	DeviceID                 string    `json:"device_id"`
	InitialDeviceDisplayName string    `json:"initial_device_display_name"`
	InhibitLogin             bool      `json:"inhibit_login"`
	Auth                     *authDict `json:"auth"`
}

// register implements POST /register (spec: Client-Server API, "Account
// registration and management").
func (s *Server) register(c echo.Context) error {
	if kind := c.QueryParam("kind"); kind == "guest" {
		return merr(http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is not enabled")
	}
	if s.cfg.Registration == RegistrationClosed {
		return errForbidden("Registration is disabled on this server")
	}
	if err := s.abuse.register.allow(c.RealIP()); err != nil {
		return err
	}
	var req registerRequest
	if err := readJSON(c, &req); err != nil {
		return err
	}
	stage := "m.login.dummy"
	if s.cfg.Registration == RegistrationToken {
		stage = "m.login.registration_token"
	}
	if req.Auth == nil || req.Auth.Type == "" {
		return uiaRequired(stage, randomString(12), nil, nil)
	}
	if req.Auth.Type != stage {
		return uiaRequired(stage, req.Auth.Session, nil, errForbidden("this server registers with %s", stage))
	}
	if stage == "m.login.registration_token" && !s.validRegistrationToken(req.Auth.Token) {
		return uiaRequired(stage, req.Auth.Session, nil, merr(http.StatusUnauthorized, "M_FORBIDDEN", "Invalid registration token"))
	}
	local := strings.ToLower(req.Username)
	if local == "" {
		local = strings.ToLower(randomID(10))
	}
	if !validLocalpart(local) {
		return merr(http.StatusBadRequest, "M_INVALID_USERNAME", "User ID may only contain a-z, 0-9, and . _ = - / +")
	}
	if len(req.Password) < 1 || len(req.Password) > 512 {
		return merr(http.StatusBadRequest, "M_WEAK_PASSWORD", "A password of 1 to 512 characters is required")
	}
	return s.createAccount(c, local, req.Password, false, req.DeviceID, req.InitialDeviceDisplayName, req.InhibitLogin)
}

func (s *Server) validRegistrationToken(tok string) bool {
	ok := 0
	for _, t := range s.cfg.RegistrationTokens {
		ok |= subtle.ConstantTimeCompare([]byte(t), []byte(tok))
	}
	return ok == 1
}

// createAccount creates the user and, unless inhibited, a logged-in device,
// and writes the register response.
func (s *Server) createAccount(c echo.Context, local, password string, admin bool, deviceID, deviceName string, inhibitLogin bool) error {
	ctx := c.Request().Context()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return err
	}
	userID := "@" + local + ":" + s.cfg.ServerName
	err = s.db.CreateUser(ctx, storage.User{UserID: userID, PasswordHash: string(hash), IsAdmin: admin}, local, s.nowMS())
	if errors.Is(err, storage.ErrExists) {
		return merr(http.StatusBadRequest, "M_USER_IN_USE", "User ID already taken")
	}
	if err != nil {
		return err
	}
	s.log.Info("user registered", "user_id", userID, "admin", admin)
	if inhibitLogin {
		return c.JSON(http.StatusOK, map[string]any{"user_id": userID, "home_server": s.cfg.ServerName})
	}
	resp, err := s.newDevice(c, userID, deviceID, deviceName)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}

// newDevice creates (or re-keys) a device and returns the login response.
func (s *Server) newDevice(c echo.Context, userID, deviceID, name string) (map[string]any, error) {
	if deviceID == "" {
		deviceID = randomID(10)
	}
	if len(deviceID) > 255 {
		return nil, errInvalidParam("device_id is too long")
	}
	tok := "sbt_" + randomString(32)
	if err := s.db.CreateDevice(c.Request().Context(), storage.Device{UserID: userID, DeviceID: deviceID, DisplayName: name}, hashToken(tok), s.nowMS()); err != nil {
		return nil, err
	}
	return map[string]any{
		"user_id":      userID,
		"access_token": tok,
		"device_id":    deviceID,
		"home_server":  s.cfg.ServerName,
	}, nil
}

func (s *Server) registerAvailable(c echo.Context) error {
	local := strings.ToLower(c.QueryParam("username"))
	if !validLocalpart(local) {
		return merr(http.StatusBadRequest, "M_INVALID_USERNAME", "User ID may only contain a-z, 0-9, and . _ = - / +")
	}
	_, err := s.db.UserByID(c.Request().Context(), "@"+local+":"+s.cfg.ServerName)
	if err == nil {
		return merr(http.StatusBadRequest, "M_USER_IN_USE", "User ID already taken")
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return c.JSON(http.StatusOK, map[string]bool{"available": true})
}

func (s *Server) loginFlows(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"flows": []map[string]string{{"type": "m.login.password"}}})
}

// login implements POST /login with m.login.password.
func (s *Server) login(c echo.Context) error {
	var req struct {
		authDict
		DeviceID                 string `json:"device_id"`
		InitialDeviceDisplayName string `json:"initial_device_display_name"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if req.Type != "m.login.password" {
		return merr(http.StatusBadRequest, "M_UNKNOWN", "Unknown login type %q", req.Type)
	}
	who := req.Identifier.User
	if who == "" {
		who = req.User
	}
	if who == "" || (req.Identifier.Type != "" && req.Identifier.Type != "m.id.user") {
		return errBadJSON("login needs identifier of type m.id.user")
	}
	userID := s.qualify(who)
	ip := c.RealIP()
	if err := s.loginAllowed(ip, userID); err != nil {
		s.log.Info("login refused: too many failures", "user_id", userID)
		return err
	}
	u, err := s.db.UserByID(c.Request().Context(), userID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && u.Deactivated) {
		// Hash anyway so that timing does not tell which users exist.
		_ = bcrypt.CompareHashAndPassword([]byte("$2a$10$abcdefghijklmnopqrstuu2Q2Xr2dJ3Zq0qD6i6yq7eW5m3e6bCy"), []byte(req.Password))
		s.log.Info("login failed", "user_id", userID, "reason", "unknown user")
		s.loginFailed(ip, userID)
		return errForbidden("Invalid username or password")
	}
	if err != nil {
		return err
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(req.Password)) != nil {
		s.log.Info("login failed", "user_id", userID, "reason", "bad password")
		s.loginFailed(ip, userID)
		return errForbidden("Invalid username or password")
	}
	resp, err := s.newDevice(c, u.UserID, req.DeviceID, req.InitialDeviceDisplayName)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}

func (s *Server) logout(c echo.Context) error {
	d := device(c)
	if err := s.db.DeleteDevices(c.Request().Context(), d.UserID, []string{d.DeviceID}); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

func (s *Server) logoutAll(c echo.Context) error {
	if err := s.db.DeleteDevices(c.Request().Context(), device(c).UserID, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

func (s *Server) whoami(c echo.Context) error {
	d := device(c)
	return c.JSON(http.StatusOK, map[string]any{"user_id": d.UserID, "device_id": d.DeviceID, "is_guest": false})
}
