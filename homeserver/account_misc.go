package homeserver

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

func (s *Server) versions(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{
		"versions": []string{"r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12"},
	})
}

func (s *Server) wellKnownClient(c echo.Context) error {
	if s.cfg.PublicBaseURL == "" {
		return errNotFound("No well-known client configuration")
	}
	return c.JSON(http.StatusOK, map[string]any{"m.homeserver": map[string]string{"base_url": s.cfg.PublicBaseURL}})
}

func (s *Server) turnServer(c echo.Context) error { return c.JSON(http.StatusOK, struct{}{}) }
