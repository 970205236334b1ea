package homeserver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/federation"
)

// ErrRemoteOpenID is returned by RemoteOpenIDUserInfo when the user's
// server did not vouch for the token: it refused it, could not be reached,
// or named a user of another server.
var ErrRemoteOpenID = errors.New("homeserver: remote server did not confirm the OpenID token")

// RemoteOpenIDUserInfo asks serverName who an OpenID token belongs to,
// through GET /_matrix/federation/v1/openid/userinfo (spec: Server-Server
// API, "OpenID"), as the MatrixRTC token service (MSC4195) does for users
// of other servers. A token of this server is looked up directly. The
// answer must name a user of serverName: a server can only vouch for its
// own users. Outbound requests follow the federation address policy.
func (s *Server) RemoteOpenIDUserInfo(ctx context.Context, serverName, token string) (string, error) {
	if token == "" || serverName == "" {
		return "", ErrUnknownOpenIDToken
	}
	if serverName == s.cfg.ServerName {
		return s.OpenIDUserInfo(ctx, token)
	}
	if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(serverName)); !ok {
		return "", fmt.Errorf("%w: invalid server name %q", ErrRemoteOpenID, serverName)
	}
	ctx, cancel := context.WithTimeout(ctx, federation.QueryTimeout)
	defer cancel()
	c := fclient.NewClient(fclient.WithTransport(s.fed.Transport()), fclient.WithTimeout(federation.QueryTimeout))
	info, err := c.LookupUserInfo(ctx, spec.ServerName(serverName), token)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrRemoteOpenID, err)
	}
	if !strings.HasPrefix(info.Sub, "@") || serverOf(info.Sub) != serverName {
		return "", fmt.Errorf("%w: %s answered for user %q", ErrRemoteOpenID, serverName, info.Sub)
	}
	return info.Sub, nil
}

// InRoomForRTC reports whether userID may get a MatrixRTC token for
// roomID: the user is joined as this server sees the room, and this
// server is in the room (a local user is joined). A server that left a
// room keeps its last view of the membership, which is no longer
// authoritative.
func (s *Server) InRoomForRTC(ctx context.Context, roomID, userID string) (bool, error) {
	m, err := s.db.Membership(ctx, roomID, userID)
	if err != nil || m != "join" {
		return false, err
	}
	if s.isLocal(userID) {
		return true, nil
	}
	joined, err := s.db.JoinedMembers(ctx, roomID)
	if err != nil {
		return false, err
	}
	for _, u := range joined {
		if s.isLocal(u) {
			return true, nil
		}
	}
	return false, nil
}
