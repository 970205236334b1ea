package homeserver

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Device management (spec: Client-Server API, "Device Management") and
// password change (spec: "Account registration and management",
// "POST /account/password").

func deviceJSON(d storage.Device) map[string]any {
	out := map[string]any{"device_id": d.DeviceID}
	if d.DisplayName != "" {
		out["display_name"] = d.DisplayName
	}
	if d.LastSeenIP != "" {
		out["last_seen_ip"] = d.LastSeenIP
	}
	if d.LastSeenTS != 0 {
		out["last_seen_ts"] = d.LastSeenTS
	}
	return out
}

// listDevices implements GET /devices.
func (s *Server) listDevices(c echo.Context) error {
	ds, err := s.db.Devices(c.Request().Context(), device(c).UserID)
	if err != nil {
		return err
	}
	out := make([]map[string]any, 0, len(ds))
	for _, d := range ds {
		out = append(out, deviceJSON(d))
	}
	return c.JSON(http.StatusOK, map[string]any{"devices": out})
}

// getDevice implements GET /devices/{deviceId}.
func (s *Server) getDevice(c echo.Context) error {
	d, err := s.db.DeviceByID(c.Request().Context(), device(c).UserID, param(c, "deviceId"))
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("Device not found")
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, deviceJSON(d))
}

// putDevice implements PUT /devices/{deviceId}: only display_name can change.
func (s *Server) putDevice(c echo.Context) error {
	var req struct {
		DisplayName *string `json:"display_name"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	userID, deviceID := device(c).UserID, param(c, "deviceId")
	if req.DisplayName == nil {
		// Nothing to change, but the device must exist.
		if _, err := s.db.DeviceByID(c.Request().Context(), userID, deviceID); errors.Is(err, storage.ErrNotFound) {
			return errNotFound("Device not found")
		} else if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, struct{}{})
	}
	if len(*req.DisplayName) > 100 {
		return errInvalidParam("display_name is longer than 100 characters")
	}
	err := s.db.SetDeviceDisplayName(c.Request().Context(), userID, deviceID, *req.DisplayName)
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("Device not found")
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

// deleteDevice implements DELETE /devices/{deviceId}, which needs
// user-interactive authentication. A device the user does not have (none
// by that ID, or another user's) is 404 M_NOT_FOUND (spec: Client-Server
// API, "DELETE /_matrix/client/v3/devices/{deviceId}").
func (s *Server) deleteDevice(c echo.Context) error {
	var req struct {
		Auth *authDict `json:"auth"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	id := param(c, "deviceId")
	if _, err := s.db.DeviceByID(c.Request().Context(), device(c).UserID, id); errors.Is(err, storage.ErrNotFound) {
		return errNotFound("No device %s", id)
	} else if err != nil {
		return err
	}
	return s.deleteDevicesUIA(c, req.Auth, []string{id})
}

// deleteDevices implements POST /delete_devices.
func (s *Server) deleteDevices(c echo.Context) error {
	var req struct {
		Devices *[]string `json:"devices"`
		Auth    *authDict `json:"auth"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if req.Devices == nil {
		return errMissingParam("devices is required")
	}
	return s.deleteDevicesUIA(c, req.Auth, *req.Devices)
}

func (s *Server) deleteDevicesUIA(c echo.Context, auth *authDict, ids []string) error {
	userID := device(c).UserID
	if err := s.checkPasswordUIA(c, auth, userID); err != nil {
		return err
	}
	if len(ids) > 0 {
		if err := s.db.DeleteDevices(c.Request().Context(), userID, ids); err != nil {
			return err
		}
		s.log.Info("devices deleted", "user_id", userID, "count", len(ids))
	}
	return c.JSON(http.StatusOK, struct{}{})
}

// changePassword implements POST /account/password. With logout_devices
// (default true) every other device of the user is logged out and its keys
// deleted; the requesting device keeps its session.
func (s *Server) changePassword(c echo.Context) error {
	var req struct {
		NewPassword   *string   `json:"new_password"`
		LogoutDevices *bool     `json:"logout_devices"`
		Auth          *authDict `json:"auth"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	me := device(c)
	if err := s.checkPasswordUIA(c, req.Auth, me.UserID); err != nil {
		return err
	}
	if req.NewPassword == nil {
		return errMissingParam("new_password is required")
	}
	if len(*req.NewPassword) < 1 || len(*req.NewPassword) > 512 {
		return merr(http.StatusBadRequest, "M_WEAK_PASSWORD", "A password of 1 to 512 characters is required")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(*req.NewPassword), bcryptCost)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.db.SetPassword(ctx, me.UserID, string(hash)); err != nil {
		return err
	}
	if req.LogoutDevices == nil || *req.LogoutDevices {
		ds, err := s.db.Devices(ctx, me.UserID)
		if err != nil {
			return err
		}
		var others []string
		for _, d := range ds {
			if d.DeviceID != me.DeviceID {
				others = append(others, d.DeviceID)
			}
		}
		if len(others) > 0 {
			if err := s.db.DeleteDevices(ctx, me.UserID, others); err != nil {
				return err
			}
		}
	}
	s.log.Info("password changed", "user_id", me.UserID)
	return c.JSON(http.StatusOK, struct{}{})
}
