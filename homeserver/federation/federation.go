package federation

import (
	"context"
	"crypto/ed25519"
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

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/internal/clock"
)

// maxFederationBody caps federation request bodies: a transaction holds up
// to 50 PDUs of 64 KiB and 100 EDUs.
const maxFederationBody = 8 << 20

// Service is the server-server API (spec: Server-Server API): key
// publishing and fetching, request signing and verification, the outbound
// queue and the inbound endpoints. Build it with New; Close stops it.
type Service struct {
	log        *slog.Logger
	serverName string
	keyID      string
	signingKey ed25519.PrivateKey
	opts       Options
	db         *storage.DB
	rooms      *rooms.Rooms
	clock      clock.Clock
	local      Local
	eph        Ephemeral
	positions  Positions
	lease      SenderLease
	hooks      HTTPHooks
	checks     JSONChecks

	client  fclient.FederationClient
	tr      *fedTransport
	keys    *keyStore
	fetcher *directKeyFetcher
	keyRing gomatrixserverlib.JSONVerifier
	echo    *echo.Echo
	queue   *outQueue
	// devLists announces local device list changes (edu.go).
	devLists *deviceListSender
	// dry remembers backfills that brought nothing (fetch.go).
	dry dryBackfills
	// gapRetry backs off the fill of gaps that could not be filled (gaps.go).
	gapRetry gapBackoff
	// latePresence holds presence that came before our join (edu.go).
	latePresence latePresence
}

// Validate checks o and fills its defaults (see each field).
func (o *Options) Validate() error {
	if _, err := NewAddrPolicy(o.AllowNetworks); err != nil {
		return err
	}
	if o.KeyValidity == 0 {
		o.KeyValidity = 24 * time.Hour
	}
	if o.StateByID == 0 {
		o.StateByID = 50
	}
	if o.RetryMin == 0 {
		o.RetryMin = 2 * time.Second
	}
	if o.RetryMax == 0 {
		o.RetryMax = 10 * time.Minute
	}
	if o.RetryMax < o.RetryMin {
		return fmt.Errorf("%w: RetryMax is below RetryMin", ErrConfig)
	}
	return nil
}

// New checks cfg, builds the federation pieces and starts the outbound
// queue (a sender for every destination with work left from before a
// restart). The caller hands commits to Committed once New returned.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	policy, err := NewAddrPolicy(cfg.Options.AllowNetworks)
	if err != nil {
		return nil, err
	}
	f := &Service{
		log: log.With("component", "federation"), serverName: cfg.ServerName, keyID: cfg.KeyID, signingKey: cfg.SigningKey,
		opts: cfg.Options, db: cfg.DB, rooms: cfg.Rooms, clock: cfg.Clock, local: cfg.Local, eph: cfg.Ephemeral,
		positions: cfg.Positions, lease: cfg.Lease, hooks: cfg.HTTP, checks: cfg.JSON,
	}
	f.tr = newFedTransport(policy, cfg.Options.SkipTLSVerify, cfg.Options.Resolver)
	f.client = fclient.NewFederationClient([]*fclient.SigningIdentity{{
		ServerName: spec.ServerName(cfg.ServerName),
		KeyID:      gomatrixserverlib.KeyID(cfg.KeyID),
		PrivateKey: cfg.SigningKey,
	}}, fclient.WithTransport(f.tr), fclient.WithTimeout(60*time.Second))
	f.keys = newKeyStore(f.db, spec.ServerName(cfg.ServerName), f.clock.Now, f.log)
	f.fetcher = &directKeyFetcher{f: f, client: f.client, store: f.keys}
	f.keyRing = &gomatrixserverlib.KeyRing{KeyFetchers: []gomatrixserverlib.KeyFetcher{f.fetcher}, KeyDatabase: f.keys}
	f.echo = f.newRouter()
	f.queue = newOutQueue(f)
	f.devLists = newDeviceListSender(f)
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := f.queue.start(startCtx); err != nil {
		f.queue.close()
		f.devLists.close()
		return nil, err
	}
	return f, nil
}

// Committed is called after every commit with the keys it touched: a
// write to a room may be a local event to send, a write to a user's
// devices a device list update to announce.
func (f *Service) Committed(keys []string) {
	f.devLists.committed(keys)
	for _, k := range keys {
		if strings.HasPrefix(k, "!") {
			f.queue.kickScan()
			return
		}
	}
}

// Close stops the outbound queue and drops idle connections.
func (f *Service) Close() {
	f.devLists.close()
	f.queue.close()
	f.tr.closeIdle()
}

// Handler serves the server-server API and the key endpoints
// (/_matrix/federation, /_matrix/key) on the federation listener.
func (f *Service) Handler() http.Handler { return f.echo }

// Transport is the round tripper of outbound federation (server name
// resolution, the address policy, TLS), for other server-to-server
// requests the homeserver makes (OpenID userinfo).
func (f *Service) Transport() http.RoundTripper { return f.tr }

func (f *Service) nowMS() int64 { return f.clock.Now().UnixMilli() }

func (f *Service) origin() spec.ServerName { return spec.ServerName(f.serverName) }

func (f *Service) newRouter() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = f.hooks.RenderError
	e.Pre(middleware.RequestID())
	e.Use(f.hooks.LogRequests)
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

// limitPeers answers 429 M_LIMIT_EXCEEDED with retry_after_ms to a remote
// address over its request rate, before any signature or key work (the
// federation listener is reached directly, so the address is the peer's).
func (f *Service) limitPeers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
		if err != nil {
			host = c.Request().RemoteAddr
		}
		if err := f.hooks.Limit(host); err != nil {
			return err
		}
		return next(c)
	}
}

// requireSignature authenticates a federation request (spec: Server-Server
// API, "Request Authentication"): every X-Matrix header must name this
// server as destination, and the signature over method, URI, origin,
// destination and content must verify with the origin's published key.
// Failures are 401 M_UNAUTHORIZED.
func (f *Service) requireSignature(next echo.HandlerFunc) echo.HandlerFunc {
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
		fr, resp := fclient.VerifyHTTPRequest(req, f.clock.Now(), f.origin(), nil, f.keyRing)
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
func (f *Service) peerAlive(server string) { f.queue.peerAlive(server) }

func (f *Service) version(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"server": map[string]string{"name": "Switchboard", "version": "0.1.0"}})
}

func (f *Service) routes(e *echo.Echo) {
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
func (f *Service) authedRoutes(v1, v2 *echo.Group) {
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
func (f *Service) queryProfile(c echo.Context) error {
	userID := c.QueryParam("user_id")
	if _, server, ok := splitUserID(userID); !ok || server != f.serverName {
		return errInvalidParam("user_id %q is not a user of this server", userID)
	}
	if _, err := f.db.UserByID(c.Request().Context(), userID); err != nil {
		return errNotFound("Unknown user %s", userID)
	}
	p := f.local.Profile(c.Request().Context(), userID)
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
