package homeserver

import (
	"context"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/federation"
)

// remoteAlias answers GET /_matrix/client/v3/directory/room/{roomAlias}
// for an alias of another server by asking that server (spec:
// Client-Server API, "GET /directory/room/{roomAlias}": "Servers may
// contact the server in the alias to resolve it"; Server-Server API, "GET
// /_matrix/federation/v1/query/directory"). It reports false for an alias
// of this server, which the caller looks up locally.
func (s *Server) remoteAlias(c echo.Context, alias string) (bool, error) {
	i := strings.IndexByte(alias, ':')
	if !strings.HasPrefix(alias, "#") || i < 2 || i == len(alias)-1 || alias[i+1:] == s.cfg.ServerName {
		return false, nil
	}
	if len(alias) > 255 {
		return true, errInvalidParam("room alias is longer than 255 bytes")
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), federation.QueryTimeout)
	defer cancel()
	roomID, servers, err := s.queries.QueryAlias(ctx, alias)
	if err != nil {
		return true, err
	}
	return true, c.JSON(http.StatusOK, map[string]any{"room_id": roomID, "servers": servers})
}
