package homeserver

import (
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"
)

// api registers client-server endpoints under every prefix clients call.
type api struct {
	e    *echo.Echo
	auth echo.MiddlewareFunc
}

// prefixes: v3 is current; r0 is what older clients (and some of
// matrix-js-sdk's paths) still call.
var clientPrefixes = []string{"/_matrix/client/v3", "/_matrix/client/r0"}

// open registers an endpoint that needs no access token.
func (a api) open(method, path string, h echo.HandlerFunc) {
	for _, p := range clientPrefixes {
		a.e.Add(method, p+path, h)
	}
}

// authed registers an endpoint that needs an access token.
func (a api) authed(method, path string, h echo.HandlerFunc) {
	for _, p := range clientPrefixes {
		a.e.Add(method, p+path, h, a.auth)
	}
}

// authedAt registers an endpoint at one exact path (v1 or unstable ones).
func (a api) authedAt(method, path string, h echo.HandlerFunc) {
	a.e.Add(method, path, h, a.auth)
}

// param returns a path parameter, percent-decoded (echo hands out the raw
// path when the request had escapes, as room IDs and event IDs do).
func param(c echo.Context, name string) string {
	v := c.Param(name)
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

func (s *Server) routes(e *echo.Echo) {
	a := api{e: e, auth: s.requireAuth}
	e.GET("/_matrix/client/versions", s.versions)
	e.GET("/.well-known/matrix/client", s.wellKnownClient)

	a.open(http.MethodGet, "/login", s.loginFlows)
	a.open(http.MethodPost, "/login", s.login)
	a.open(http.MethodPost, "/register", s.register)
	a.open(http.MethodGet, "/register/available", s.registerAvailable)
	a.authed(http.MethodPost, "/logout", s.logout)
	a.authed(http.MethodPost, "/logout/all", s.logoutAll)
	a.authed(http.MethodGet, "/account/whoami", s.whoami)

	a.authed(http.MethodPost, "/createRoom", s.createRoom)
	a.authed(http.MethodPost, "/join/:room", s.joinRoomByIDOrAlias)
	a.authed(http.MethodPost, "/rooms/:roomId/join", s.joinRoom)
	a.authed(http.MethodPost, "/rooms/:roomId/invite", s.membershipOf("invite"))
	a.authed(http.MethodPost, "/rooms/:roomId/kick", s.membershipOf("leave"))
	a.authed(http.MethodPost, "/rooms/:roomId/ban", s.membershipOf("ban"))
	a.authed(http.MethodPost, "/rooms/:roomId/unban", s.membershipOf("unban"))
	a.authed(http.MethodPost, "/rooms/:roomId/leave", s.leaveRoom)
	a.authed(http.MethodPost, "/rooms/:roomId/forget", s.forgetRoom)
	a.authed(http.MethodGet, "/rooms/:roomId/state", s.getState)
	a.authed(http.MethodGet, "/rooms/:roomId/state/:type", s.getStateEvent)
	a.authed(http.MethodGet, "/rooms/:roomId/state/:type/:stateKey", s.getStateEvent)
	a.authed(http.MethodGet, "/rooms/:roomId/state/:type/", s.getStateEvent)
	a.authed(http.MethodPut, "/rooms/:roomId/state/:type", s.putState)
	a.authed(http.MethodPut, "/rooms/:roomId/state/:type/", s.putState)
	a.authed(http.MethodPut, "/rooms/:roomId/state/:type/:stateKey", s.putState)
	a.authed(http.MethodPut, "/rooms/:roomId/send/:type/:txnId", s.sendEvent)
	a.authed(http.MethodPut, "/rooms/:roomId/redact/:eventId/:txnId", s.redactEvent)
	a.authed(http.MethodGet, "/rooms/:roomId/event/:eventId", s.getEvent)
	a.authed(http.MethodGet, "/rooms/:roomId/messages", s.messages)
	a.authed(http.MethodGet, "/rooms/:roomId/context/:eventId", s.eventContext)
	a.authed(http.MethodGet, "/rooms/:roomId/members", s.members)
	a.authed(http.MethodGet, "/rooms/:roomId/joined_members", s.joinedMembers)
	a.authed(http.MethodGet, "/joined_rooms", s.joinedRooms)
	a.authed(http.MethodGet, "/directory/room/:alias", s.getAlias)
	a.authed(http.MethodPut, "/directory/room/:alias", s.putAlias)
	a.authed(http.MethodDelete, "/directory/room/:alias", s.deleteAlias)
	a.authed(http.MethodGet, "/directory/list/room/:roomId", s.getVisibility)
	a.authed(http.MethodPut, "/directory/list/room/:roomId", s.putVisibility)
	a.open(http.MethodGet, "/publicRooms", s.publicRooms)
	a.authed(http.MethodPost, "/publicRooms", s.publicRooms)

	a.authed(http.MethodGet, "/sync", s.sync)
	a.authed(http.MethodPut, "/rooms/:roomId/typing/:userId", s.putTyping)
	a.authed(http.MethodPost, "/rooms/:roomId/receipt/:receiptType/:eventId", s.postReceipt)
	a.authed(http.MethodPost, "/rooms/:roomId/read_markers", s.postReadMarkers)
	a.authed(http.MethodPut, "/sendToDevice/:type/:txnId", s.sendToDevice)
	a.authed(http.MethodGet, "/presence/:userId/status", s.getPresence)
	a.authed(http.MethodPut, "/presence/:userId/status", s.putPresence)
	a.authed(http.MethodGet, "/user/:userId/account_data/:type", s.getAccountData)
	a.authed(http.MethodPut, "/user/:userId/account_data/:type", s.putAccountData)
	a.authed(http.MethodGet, "/user/:userId/rooms/:roomId/account_data/:type", s.getAccountData)
	a.authed(http.MethodPut, "/user/:userId/rooms/:roomId/account_data/:type", s.putAccountData)
	a.authed(http.MethodGet, "/voip/turnServer", s.turnServer)

	// Devices, profiles, filters, push rules, keys, OpenID, capabilities,
	// password change and shared-secret registration.
	s.accountRoutes(a)
	// Pushers and notifications (push_*.go), key backup (roomkeys*.go).
	s.pushRoutes(a)
	s.roomKeysRoutes(a)
	a.authedAt(http.MethodPost, "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", s.slidingSync)

	// MatrixRTC (Element Call): foci discovery, delayed events, delegated
	// leave (rtc_discovery.go, delayed_events.go, rtc_delegate.go).
	a.authedAt(http.MethodGet, "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports", s.getRTCTransports)
	s.delayedRoutes(e)
	a.authedAt(http.MethodPost, delegatePath, s.delegateDelayedLeave)
	a.authedAt(http.MethodPost, getTokenPath, s.getRTCToken)
}
