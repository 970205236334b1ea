package homeserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Profiles (spec: Client-Server API, "Profiles") and filters (spec:
// "Filtering").

// maxDisplayNameLen and maxAvatarURLLen bound profile fields, as Synapse
// does (256 characters and 1000 bytes).
const (
	maxDisplayNameLen = 256
	maxAvatarURLLen   = 1000
)

// profileOf returns a local user's profile, or 404 M_NOT_FOUND for users
// this server does not know (remote profiles need federation).
func (s *Server) profileOf(c echo.Context, userID string) (displayName, avatarURL string, err error) {
	if _, server, ok := splitUserID(userID); ok && server != s.cfg.ServerName {
		return s.queries.QueryProfile(c.Request().Context(), userID)
	}
	name, avatar, err := s.db.DisplayProfile(c.Request().Context(), userID)
	if errors.Is(err, storage.ErrNotFound) {
		return "", "", errNotFound("Profile was not found")
	}
	return name, avatar, err
}

// getProfile implements GET /profile/{userId}.
func (s *Server) getProfile(c echo.Context) error {
	name, avatar, err := s.profileOf(c, param(c, "userId"))
	if err != nil {
		return err
	}
	out := map[string]string{}
	if name != "" {
		out["displayname"] = name
	}
	if avatar != "" {
		out["avatar_url"] = avatar
	}
	return c.JSON(http.StatusOK, out)
}

// getProfileField implements GET /profile/{userId}/displayname and
// /avatar_url. An unset field is 404 M_NOT_FOUND, as Synapse answers.
func (s *Server) getProfileField(field string) echo.HandlerFunc {
	return func(c echo.Context) error {
		name, avatar, err := s.profileOf(c, param(c, "userId"))
		if err != nil {
			return err
		}
		v := name
		if field == "avatar_url" {
			v = avatar
		}
		if v == "" {
			return errNotFound("The %s is not set", field)
		}
		return c.JSON(http.StatusOK, map[string]string{field: v})
	}
}

// putProfileField implements PUT /profile/{userId}/displayname and
// /avatar_url. Only the user themselves may change their profile.
// The change is also sent into every joined room as a new m.room.member
// event (spec: "Events on Change of Profile Information").
func (s *Server) putProfileField(field string) echo.HandlerFunc {
	return func(c echo.Context) error {
		userID := param(c, "userId")
		if userID != device(c).UserID {
			return errForbidden("You cannot change another user's profile")
		}
		var req map[string]json.RawMessage
		if err := readEventJSON(c, &req); err != nil {
			return err
		}
		raw, ok := req[field]
		if !ok {
			return errMissingParam("%s is required", field)
		}
		var v *string
		if err := json.Unmarshal(raw, &v); err != nil {
			return errBadJSON("%s must be a string", field)
		}
		value := ""
		if v != nil {
			value = *v
		}
		ctx := c.Request().Context()
		var err error
		switch field {
		case "displayname":
			if utf8.RuneCountInString(value) > maxDisplayNameLen {
				return errInvalidParam("displayname is longer than %d characters", maxDisplayNameLen)
			}
			err = s.db.SetDisplayName(ctx, userID, value)
		default:
			if len(value) > maxAvatarURLLen {
				return errInvalidParam("avatar_url is longer than %d bytes", maxAvatarURLLen)
			}
			if value != "" && !strings.HasPrefix(value, "mxc://") {
				return errInvalidParam("avatar_url must be an mxc:// URI")
			}
			err = s.db.SetAvatarURL(ctx, userID, value)
		}
		if errors.Is(err, storage.ErrNotFound) {
			return errNotFound("Profile was not found")
		}
		if err != nil {
			return err
		}
		s.propagateProfile(ctx, userID)
		return c.JSON(http.StatusOK, struct{}{})
	}
}

// postFilter implements POST /user/{userId}/filter: the filter is stored
// as given, once it is known to be a JSON object.
func (s *Server) postFilter(c echo.Context) error {
	userID := param(c, "userId")
	if userID != device(c).UserID {
		return errForbidden("You cannot create filters for other users")
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	filter, err := parseFilter(body)
	if err != nil {
		return err
	}
	id, err := s.db.CreateFilter(c.Request().Context(), userID, filter)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"filter_id": id})
}

// parseFilter checks that a filter definition is a JSON object, answering
// M_NOT_JSON or M_BAD_JSON, and returns it as given.
func parseFilter(body []byte) ([]byte, error) {
	body = bytes.TrimSpace(body)
	if !json.Valid(body) {
		return nil, errNotJSON("Content not JSON.")
	}
	if len(body) == 0 || body[0] != '{' {
		return nil, errBadJSON("a filter must be a JSON object")
	}
	return body, nil
}

// readBody reads a whole request body, answering M_TOO_LARGE past the
// configured limit.
func readBody(c echo.Context) ([]byte, error) {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge("request body is larger than %d bytes", mbe.Limit)
		}
		return nil, errBadJSON("could not read body: %v", err)
	}
	return body, nil
}

// getFilter implements GET /user/{userId}/filter/{filterId}.
func (s *Server) getFilter(c echo.Context) error {
	userID := param(c, "userId")
	if userID != device(c).UserID {
		return errForbidden("You cannot read other users' filters")
	}
	f, err := s.db.Filter(c.Request().Context(), userID, param(c, "filterId"))
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("No such filter")
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, json.RawMessage(f))
}
