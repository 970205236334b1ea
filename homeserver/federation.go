package homeserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// maxFederationBody caps federation request bodies: a transaction holds up
// to 50 PDUs of 64 KiB and 100 EDUs.
const maxFederationBody = 8 << 20

// federation is the server-server API (spec: Server-Server API): key
// publishing and fetching, request signing and verification, the outbound
// queue and the inbound endpoints.
type federation struct {
	s       *Server
	log     *slog.Logger
	client  fclient.FederationClient
	tr      *fedTransport
	keys    *keyStore
	fetcher *directKeyFetcher
	keyRing gomatrixserverlib.JSONVerifier
	echo    *echo.Echo
	queue   *outQueue
	// devLists announces local device list changes (federation_edu.go).
	devLists *deviceListSender
	// dry remembers backfills that brought nothing (federation_fetch.go).
	dry dryBackfills
	// gapRetry backs off the fill of gaps that could not be filled (gaps.go).
	gapRetry gapBackoff
	// latePresence holds presence that came before our join (federation_edu.go).
	latePresence latePresence
}

func (c *FederationConfig) validate() error {
	if _, err := newAddrPolicy(c.AllowNetworks); err != nil {
		return err
	}
	if c.KeyValidity == 0 {
		c.KeyValidity = 24 * time.Hour
	}
	if c.RetryMin == 0 {
		c.RetryMin = 2 * time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 10 * time.Minute
	}
	if c.RetryMax < c.RetryMin {
		return fmt.Errorf("%w: federation RetryMax is below RetryMin", ErrConfig)
	}
	return nil
}

// newFederation wires the federation pieces of s (its config is valid).
func newFederation(s *Server) (*federation, error) {
	policy, err := newAddrPolicy(s.cfg.Federation.AllowNetworks)
	if err != nil {
		return nil, err
	}
	f := &federation{s: s, log: s.log.With("component", "federation")}
	f.tr = newFedTransport(policy, s.cfg.Federation.SkipTLSVerify, s.cfg.Federation.Resolver)
	f.client = fclient.NewFederationClient([]*fclient.SigningIdentity{{
		ServerName: spec.ServerName(s.cfg.ServerName),
		KeyID:      gomatrixserverlib.KeyID(s.cfg.KeyID),
		PrivateKey: s.cfg.SigningKey,
	}}, fclient.WithTransport(f.tr), fclient.WithTimeout(60*time.Second))
	f.keys = newKeyStore(s.db, spec.ServerName(s.cfg.ServerName), s.cfg.Now, f.log)
	f.fetcher = &directKeyFetcher{f: f, client: f.client, store: f.keys}
	f.keyRing = &gomatrixserverlib.KeyRing{KeyFetchers: []gomatrixserverlib.KeyFetcher{f.fetcher}, KeyDatabase: f.keys}
	f.echo = f.newRouter()
	f.queue = newOutQueue(f)
	f.devLists = newDeviceListSender(f)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.queue.start(ctx); err != nil {
		f.queue.close()
		return nil, err
	}
	return f, nil
}

// committed is called after every commit with the keys it touched: a
// write to a room may be a local event to send.
func (f *federation) committed(keys []string) {
	if f == nil {
		return
	}
	f.devLists.committed(keys)
	for _, k := range keys {
		if strings.HasPrefix(k, "!") {
			f.queue.kickScan()
			return
		}
	}
}

// close stops the outbound queue and drops idle connections.
func (f *federation) close() {
	if f == nil {
		return
	}
	f.devLists.close()
	f.queue.close()
	f.tr.closeIdle()
}

// FederationHandler serves the server-server API and the key endpoints
// (/_matrix/federation, /_matrix/key) on the federation listener.
func (s *Server) FederationHandler() http.Handler { return s.fed.echo }

func (f *federation) origin() spec.ServerName { return spec.ServerName(f.s.cfg.ServerName) }

func (f *federation) newRouter() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = f.s.renderError
	e.Pre(middleware.RequestID())
	e.Use(f.s.logRequests)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		f.log.Error("federation handler panicked", "err", err, "path", c.Path(), "stack", string(stack))
		return err
	}}))
	e.Use(f.limitPeers)
	e.Use(middleware.BodyLimit(fmt.Sprintf("%dB", maxFederationBody)))
	f.routes(e)
	return e
}

const (
	ctxOrigin  = "fed.origin"
	ctxContent = "fed.content"
)

// fedOrigin is the authenticated origin server of a signed request.
func fedOrigin(c echo.Context) string {
	o, _ := c.Get(ctxOrigin).(string)
	return o
}

// fedContent is the JSON body of a signed request.
func fedContent(c echo.Context) []byte {
	b, _ := c.Get(ctxContent).([]byte)
	return b
}

func errUnauthorized(format string, args ...any) *MatrixError {
	return merr(http.StatusUnauthorized, "M_UNAUTHORIZED", format, args...)
}

// limitPeers answers 429 M_LIMIT_EXCEEDED with retry_after_ms to a remote
// address over its request rate, before any signature or key work (the
// federation listener is reached directly, so the address is the peer's).
func (f *federation) limitPeers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
		if err != nil {
			host = c.Request().RemoteAddr
		}
		if e := f.s.fedLimit.allow(host); e != nil {
			return e
		}
		return next(c)
	}
}

// requireSignature authenticates a federation request (spec: Server-Server
// API, "Request Authentication"): every X-Matrix header must name this
// server as destination, and the signature over method, URI, origin,
// destination and content must verify with the origin's published key.
// Failures are 401 M_UNAUTHORIZED.
func (f *federation) requireSignature(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		headers := req.Header.Values("Authorization")
		if len(headers) == 0 {
			return errUnauthorized("missing X-Matrix authorization")
		}
		for _, h := range headers {
			scheme, origin, dest, _, _ := fclient.ParseAuthorization(h)
			if scheme != "X-Matrix" || origin == "" {
				return errUnauthorized("malformed X-Matrix authorization")
			}
			if dest != "" && dest != f.origin() {
				return errUnauthorized("request is for %q, not this server", dest)
			}
		}
		fr, resp := fclient.VerifyHTTPRequest(req, f.s.cfg.Now(), f.origin(), nil, f.keyRing)
		if fr == nil {
			f.log.Info("federation request refused", "path", req.URL.Path, "status", resp.Code)
			if resp.Code >= 500 {
				return errUnknown("cannot authenticate request")
			}
			return errUnauthorized("invalid X-Matrix signature")
		}
		c.Set(ctxOrigin, string(fr.Origin()))
		c.Set(ctxContent, fr.Content())
		f.peerAlive(string(fr.Origin()))
		return next(c)
	}
}

// peerAlive is called for every authenticated request from server: it is
// up, so its outbound queue may retry at once.
func (f *federation) peerAlive(server string) { f.queue.peerAlive(server) }

func (f *federation) version(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"server": map[string]string{"name": "Switchboard", "version": "0.1.0"}})
}

func (f *federation) routes(e *echo.Echo) {
	e.GET("/_matrix/key/v2/server", f.getServerKeys)
	e.GET("/_matrix/key/v2/server/:keyId", f.getServerKeys)
	e.POST("/_matrix/key/v2/query", f.queryKeys)
	e.GET("/_matrix/key/v2/query/:serverName", f.queryServerKeys)
	e.GET("/_matrix/federation/v1/version", f.version)
	// Authenticated by its OpenID token rather than X-Matrix.
	e.GET("/_matrix/federation/v1/openid/userinfo", f.openIDUserInfo)

	v1 := e.Group("/_matrix/federation/v1", f.requireSignature)
	v2 := e.Group("/_matrix/federation/v2", f.requireSignature)
	f.authedRoutes(v1, v2)
}

// authedRoutes registers the signed endpoints.
func (f *federation) authedRoutes(v1, v2 *echo.Group) {
	v1.GET("/query/profile", f.queryProfile)
	v1.PUT("/send/:txnId", f.send)
	v1.GET("/make_join/:roomId/:userId", f.makeJoin)
	v2.PUT("/send_join/:roomId/:eventId", f.sendJoin)
	v2.PUT("/send_leave/:roomId/:eventId", f.sendLeave)
	v2.PUT("/invite/:roomId/:eventId", f.invite)
	v1.GET("/query/directory", f.queryDirectory)
	v1.GET("/make_leave/:roomId/:userId", f.makeLeave)
	v1.GET("/event/:eventId", f.getEvent)
	v1.GET("/state/:roomId", f.stateAt(false))
	v1.GET("/state_ids/:roomId", f.stateAt(true))
	v1.GET("/event_auth/:roomId/:eventId", f.eventAuth)
	v1.GET("/backfill/:roomId", f.backfill)
	v1.POST("/get_missing_events/:roomId", f.getMissingEvents)
	v1.GET("/user/devices/:userId", f.userDevices)
	v1.POST("/user/keys/query", f.userKeysQuery)
	v1.POST("/user/keys/claim", f.userKeysClaim)
	v1.GET("/publicRooms", f.publicRooms)
	v1.POST("/publicRooms", f.publicRooms)
}

// queryProfile serves GET /_matrix/federation/v1/query/profile (spec:
// Server-Server API, "Query information").
func (f *federation) queryProfile(c echo.Context) error {
	userID := c.QueryParam("user_id")
	if _, server, ok := splitUserID(userID); !ok || server != f.s.cfg.ServerName {
		return errInvalidParam("user_id %q is not a user of this server", userID)
	}
	if _, err := f.s.db.UserByID(c.Request().Context(), userID); err != nil {
		return errNotFound("Unknown user %s", userID)
	}
	p := f.s.memberProfile(c.Request().Context(), userID)
	switch field := c.QueryParam("field"); field {
	case "":
	case "displayname", "avatar_url":
		for k := range p {
			if k != field {
				delete(p, k)
			}
		}
	default:
		return errInvalidParam("unknown profile field %q", field)
	}
	return c.JSON(http.StatusOK, p)
}
