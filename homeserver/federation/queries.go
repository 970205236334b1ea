package federation

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
)

// QueryTimeout bounds a client request's wait on another server (the
// queries of this file and the homeserver's own remote requests).
const QueryTimeout = 10 * time.Second

// QueryProfile asks userID's server for the profile (spec: Server-Server
// API, "GET /query/profile"), for the client API's /profile.
func (f *Service) QueryProfile(ctx context.Context, userID string) (displayName, avatarURL string, err error) {
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	p, err := f.client.LookupProfile(ctx, f.origin(), spec.ServerName(rooms.ServerOf(userID)), userID, "")
	if err != nil {
		f.log.Debug("remote profile lookup failed", "user_id", userID, "err", err)
		return "", "", f.remoteError(ctx, rooms.ServerOf(userID), "query/profile", err)
	}
	return p.DisplayName, p.AvatarURL, nil
}

// keyFailure is what /keys/query and /keys/claim say about a server that
// did not answer.
var keyFailure = map[string]any{"status": 503, "message": "the server did not answer"}

// QueryKeys fills a client's /keys/query answer for users of other
// servers, one user/keys/query per server (spec: Server-Server API,
// "POST /user/keys/query").
func (f *Service) QueryKeys(ctx context.Context, byServer map[string]map[string][]string,
	devices map[string]map[string]json.RawMessage, masters, selfs map[string]json.RawMessage, failures map[string]any) {
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	for server, users := range byServer {
		res, err := f.client.QueryKeys(ctx, f.origin(), spec.ServerName(server), users)
		if err != nil {
			failures[server] = keyFailure
			continue
		}
		for userID, devs := range res.DeviceKeys {
			if rooms.ServerOf(userID) != server {
				continue // a server answers for its own users only
			}
			out := map[string]json.RawMessage{}
			for id, k := range devs {
				if b, err := json.Marshal(k); err == nil {
					out[id] = b
				}
			}
			devices[userID] = out
		}
		for userID, k := range res.MasterKeys {
			if b, err := json.Marshal(k); err == nil && rooms.ServerOf(userID) == server {
				masters[userID] = b
			}
		}
		for userID, k := range res.SelfSigningKeys {
			if b, err := json.Marshal(k); err == nil && rooms.ServerOf(userID) == server {
				selfs[userID] = b
			}
		}
	}
}

// ClaimKeys fills a client's /keys/claim answer for users of other
// servers (spec: Server-Server API, "POST /user/keys/claim").
func (f *Service) ClaimKeys(ctx context.Context, byServer map[string]map[string]map[string]string,
	out map[string]map[string]map[string]json.RawMessage, failures map[string]any) {
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	for server, claims := range byServer {
		res, err := f.client.ClaimKeys(ctx, f.origin(), spec.ServerName(server), claims)
		if err != nil {
			failures[server] = keyFailure
			continue
		}
		for userID, devs := range res.OneTimeKeys {
			if rooms.ServerOf(userID) != server {
				continue
			}
			if out[userID] == nil {
				out[userID] = map[string]map[string]json.RawMessage{}
			}
			for dev, keys := range devs {
				out[userID][dev] = keys
			}
		}
	}
}

// QueryDirectory asks server for a page of its room directory (spec:
// Server-Server API, "GET /publicRooms"), for the client API's
// /publicRooms?server=.
func (f *Service) QueryDirectory(ctx context.Context, server string, limit int, since string) (fclient.RespPublicRooms, error) {
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	res, err := f.client.GetPublicRooms(ctx, f.origin(), spec.ServerName(server), limit, since, false, "")
	if err != nil {
		f.log.Info("remote room directory failed", "server", server, "err", err)
		return fclient.RespPublicRooms{}, merr(http.StatusBadGateway, "M_UNKNOWN", "%s did not answer with its room directory", server)
	}
	if res.Chunk == nil {
		res.Chunk = []fclient.PublicRoom{}
	}
	return res, nil
}

// publicRooms serves GET and POST /_matrix/federation/v1/publicRooms:
// this server's room directory, as clients see it.
func (f *Service) publicRooms(c echo.Context) error {
	limit, since, err := DirectoryPage(c, func(v any) error {
		if err := json.Unmarshal(fedContent(c), v); err != nil {
			return errBadJSON("%v", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	resp, err := f.local.PublicRooms(c.Request().Context(), limit, since)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}
