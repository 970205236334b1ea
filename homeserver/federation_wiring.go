package homeserver

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib/fclient"

	"github.com/switchboard-chat/switchboard/homeserver/federation"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
	hsync "github.com/switchboard-chat/switchboard/homeserver/sync"
)

// What the client API needs of federation, as three small interfaces
// (homeserver/federation implements them; a future clientapi package
// keeps them as they are).

// remoteMembership joins, leaves and invites for rooms and users of other
// servers (spec: Server-Server API, "Joining Rooms", "Leaving Rooms",
// "Inviting to a room").
type remoteMembership interface {
	NeedsRemoteJoin(ctx context.Context, roomID string) (bool, error)
	JoinServers(ctx context.Context, roomID, userID string, named []string) []string
	JoinRemote(ctx context.Context, roomID, userID string, servers []string) error
	LeaveRemote(ctx context.Context, roomID, userID string) error
	InviteRemote(ctx context.Context, roomID, sender, target, reason string, isDirect bool) error
}

// remoteQueries asks other servers for what a client wants to know
// (spec: Server-Server API, "Querying for information", "Backfilling and
// retrieving missing events", "End-to-End Encryption").
type remoteQueries interface {
	QueryProfile(ctx context.Context, userID string) (displayName, avatarURL string, err error)
	QueryAlias(ctx context.Context, alias string) (roomID string, servers []string, err error)
	QueryDirectory(ctx context.Context, server string, limit int, since string) (fclient.RespPublicRooms, error)
	QueryKeys(ctx context.Context, byServer map[string]map[string][]string,
		devices map[string]map[string]json.RawMessage, masters, selfs map[string]json.RawMessage, failures map[string]any)
	ClaimKeys(ctx context.Context, byServer map[string]map[string]map[string]string,
		out map[string]map[string]map[string]json.RawMessage, failures map[string]any)
	Backfill(ctx context.Context, roomID string, limit int) (int, error)
	FillGap(ctx context.Context, g storage.Gap) bool
}

// eduSender sends EDUs about our users to the servers that share a room
// with them (spec: Server-Server API, "EDUs").
type eduSender interface {
	SendTyping(ctx context.Context, roomID, userID string, typing bool)
	SendReceipt(ctx context.Context, roomID, userID, eventID, threadID string, ts int64)
	SendPresence(ctx context.Context, userID string, st federation.Presence)
	SendToDevice(ctx context.Context, msgs []storage.ToDevice) error
}

// newFederation builds the server-server API on s's storage and rooms
// (both open) and registers it for commit notifications.
func newFederation(ctx context.Context, s *Server) (*federation.Service, error) {
	f, err := federation.New(ctx, federation.Config{
		ServerName: s.cfg.ServerName, KeyID: s.cfg.KeyID, SigningKey: s.cfg.SigningKey,
		Options: s.cfg.Federation,
		DB:      s.db, Rooms: s.rooms, Clock: s.cfg.Clock,
		Local:     fedLocal{s},
		Ephemeral: fedEphemeral{s},
		Positions: s.notifier,
		Lease:     s.cfg.FederationLease,
		HTTP: federation.HTTPHooks{
			RenderError: s.renderError,
			LogRequests: s.logRequests,
			Limit: func(host string) error {
				if e := s.fedLimit.allow(host); e != nil {
					return e
				}
				return nil
			},
		},
		JSON: federation.JSONChecks{Canonical: checkCanonicalJSON, Request: checkClientJSON},
	}, s.log)
	if err != nil {
		return nil, err
	}
	s.committed.add(f.Committed)
	return f, nil
}

// FederationHandler serves the server-server API and the key endpoints
// (/_matrix/federation, /_matrix/key) on the federation listener.
func (s *Server) FederationHandler() http.Handler { return s.fed.Handler() }

// fedLocal is federation's view of this server (federation.Local).
type fedLocal struct{ s *Server }

func (l fedLocal) Profile(ctx context.Context, userID string) map[string]any {
	return l.s.memberProfile(ctx, userID)
}
func (l fedLocal) Visibility(roomID, server string) federation.Visibility {
	return visibleTo{l.s.serverVisibility(roomID, server)}
}
func (l fedLocal) ValidAlias(alias string) bool { return l.s.validAlias(alias) }
func (l fedLocal) PublicRooms(ctx context.Context, limit int, since string) (map[string]any, error) {
	return l.s.publicRoomsPage(ctx, limit, since)
}
func (l fedLocal) OpenIDUserInfo(ctx context.Context, token string) (string, error) {
	return l.s.OpenIDUserInfo(ctx, token)
}
func (l fedLocal) DeliverToServices(msgs []storage.ToDevice) []storage.ToDevice {
	return l.s.deliverToServices(msgs)
}

// visibleTo is a server's visibility of one room (federation.Visibility).
type visibleTo struct{ v *visibility }

func (v visibleTo) Visible(ctx context.Context, e storage.Event) (bool, error) {
	return v.v.visible(ctx, e)
}

// fedEphemeral is typing and presence for federation
// (federation.Ephemeral).
type fedEphemeral struct{ s *Server }

func (e fedEphemeral) SetTyping(roomID, userID string, typing bool, timeout time.Duration) {
	e.s.setTyping(roomID, userID, typing, timeout)
}
func (e fedEphemeral) SetPresence(ctx context.Context, userID string, p federation.Presence) {
	msg := p.StatusMsg
	e.s.setPresence(ctx, userID, presenceUpdate{Presence: p.Presence, StatusMsg: &msg,
		LastActive: p.LastActive, CurrentlyActive: p.CurrentlyActive})
}
func (e fedEphemeral) Presence(userID string) (federation.Presence, bool) {
	st, ok := e.s.eph.Presence(userID)
	return fedPresence(st), ok
}

// fedPresence is a presence state as federation sends it.
func fedPresence(st hsync.PresenceState) federation.Presence {
	return federation.Presence{Presence: st.Presence, StatusMsg: st.StatusMsg, LastActive: st.LastActive, CurrentlyActive: st.CurrentlyActive}
}
