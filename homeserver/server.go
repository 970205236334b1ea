// Package homeserver is the Matrix homeserver core of Switchboard: the
// client-server API, rooms and events, /sync, accounts and devices, and their
// storage on SQLite or PostgreSQL. The /sync streams, their long-poll and
// wake-ups, and typing and presence live in homeserver/sync, which this
// package wires (sync_wiring.go). The server-server API lives in
// homeserver/federation, built in New after storage and rooms
// (federation_wiring.go); the client handlers reach it only through the
// small interfaces defined there (remoteMembership, remoteQueries,
// eduSender).
package homeserver

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-chat/switchboard/homeserver/federation"
	"github.com/switchboard-chat/switchboard/homeserver/push"
	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
	hsync "github.com/switchboard-chat/switchboard/homeserver/sync"
	"github.com/switchboard-chat/switchboard/internal/clock"
)

// Server is a running homeserver core. Create it with New, serve
// ClientHandler on the client listener, and Close it on shutdown.
type Server struct {
	cfg  Config
	log  *slog.Logger
	db   *storage.DB
	echo *echo.Echo
	// notifier wakes /sync long-polls after commits; eph is typing and
	// presence; syncer builds /sync responses (all three: homeserver/sync).
	notifier hsync.Notifier
	eph      hsync.Ephemeral
	syncer   *hsync.Syncer
	inbox    serviceInbox
	// rooms appends events to rooms, local or remote (rooms/).
	rooms   *rooms.Rooms
	metrics *metrics
	// fed is the server-server API (homeserver/federation); the client
	// API reaches it through remote, queries and edus
	// (federation_wiring.go).
	fed     *federation.Service
	remote  remoteMembership
	queries remoteQueries
	edus    eduSender
	// push evaluates push rules and feeds push gateways (push/).
	push *push.Manager
	// committed are the parts that hear of every commit after the
	// notifier (commit.go).
	committed commitListeners
	// ssConns are the sliding sync connections and ssRooms their shared
	// room metadata (slidingsync*.go).
	ssConns ssConns
	ssRooms ssRoomCache

	sendLimit  *limiter
	loginLimit *limiter
	// abuse: login failures per account, registration and admin nonces
	// (login_limits.go).
	abuse    abuseLimits
	fedLimit *limiter // per remote address on the federation listener

	// delayed sends MSC4140 delayed events when due (delayed_events.go).
	delayed *delayedScheduler
	// rtcDelegates restarts and sends delegated delayed leaves (rtc_delegate.go).
	rtcDelegates *rtcDelegations

	// shutdown is closed by Shutdown: long-polls return at once.
	shutdown chan struct{}
}

// New validates cfg, opens and migrates the database and returns a Server.
func New(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "homeserver")
	s := &Server{
		cfg:      cfg,
		log:      log,
		shutdown: make(chan struct{}),
	}
	// The notifier hears of every committed write from the storage writer,
	// in commit order; it starts at the newest position once open. The
	// parts built after the database hear of commits once they are added
	// to s.committed (each catches up from its own cursor when it starts).
	notifier := cfg.Notifier
	db, err := storage.Open(ctx, cfg.Database, func(pos int64, keys []string) {
		notifier.Notify(pos, keys...)
		s.committed.notify(keys)
	})
	if err != nil {
		return nil, err
	}
	s.db = db
	max, err := db.MaxPos(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	notifier.Start(max)
	s.notifier = notifier
	s.eph = cfg.Ephemeral
	if !cfg.RateLimit.Disabled {
		s.sendLimit = newLimiter(cfg.RateLimit.SendPerSecond, cfg.RateLimit.SendBurst, cfg.Now)
		s.loginLimit = newLimiter(cfg.RateLimit.LoginPerSecond, cfg.RateLimit.LoginBurst, cfg.Now)
		s.abuse = newAbuseLimits(cfg.RateLimit, cfg.Now)
		s.fedLimit = newLimiter(cfg.RateLimit.FederationPerSecond, cfg.RateLimit.FederationBurst, cfg.Now)
	}
	if s.metrics, err = newMetrics(reg); err != nil {
		db.Close()
		return nil, err
	}
	s.rooms, err = rooms.New(rooms.Config{
		ServerName: cfg.ServerName, KeyID: cfg.KeyID, SigningKey: cfg.SigningKey, Now: cfg.Now,
		CheckJSON: checkCanonicalJSON, AfterAppend: s.afterAppend,
	}, log)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if s.syncer, err = s.newSyncer(); err != nil {
		db.Close()
		return nil, err
	}
	s.echo = s.newRouter()
	if s.fed, err = newFederation(ctx, s); err != nil {
		db.Close()
		if errors.Is(err, federation.ErrConfig) {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		return nil, err
	}
	s.remote, s.queries, s.edus = s.fed, s.fed, s.fed
	policy, err := federation.NewAddrPolicy(cfg.Push.AllowNetworks)
	if err != nil {
		s.fed.Close()
		db.Close()
		return nil, err
	}
	s.push, err = push.New(push.Config{DB: db, IsLocalUser: s.isLocal, Clock: cfg.Clock,
		RetryMin: cfg.Push.RetryMin, RetryMax: cfg.Push.RetryMax, DialControl: policy.Control, Resolver: cfg.Federation.Resolver}, log)
	if err == nil {
		err = s.push.Start(ctx)
	}
	if err != nil {
		s.fed.Close()
		db.Close()
		return nil, err
	}
	s.committed.add(s.push.Committed)
	s.delayed = newDelayedScheduler(s)
	s.delayed.start()
	s.rtcDelegates = newRTCDelegations(s)
	s.rtcDelegates.start()
	return s, nil
}

func (c *Config) validate() error {
	if c.ServerName == "" {
		return fmt.Errorf("%w: server name is required", ErrConfig)
	}
	if strings.ContainsAny(c.ServerName, "/ @!#$") {
		return fmt.Errorf("%w: server name %q is not a valid Matrix server name", ErrConfig, c.ServerName)
	}
	if c.Database == "" {
		return fmt.Errorf("%w: database is required", ErrConfig)
	}
	switch c.Registration {
	case "":
		c.Registration = RegistrationClosed
	case RegistrationOpen, RegistrationToken, RegistrationClosed:
	default:
		return fmt.Errorf("%w: registration must be open, token or closed, not %q", ErrConfig, c.Registration)
	}
	if c.Registration == RegistrationToken && len(c.RegistrationTokens) == 0 {
		return fmt.Errorf("%w: registration is \"token\" but no registration tokens are configured", ErrConfig)
	}
	if len(c.SigningKey) != ed25519.PrivateKeySize {
		return fmt.Errorf("%w: an ed25519 signing key is required", ErrConfig)
	}
	if c.KeyID == "" {
		c.KeyID = "ed25519:auto"
	}
	if !strings.HasPrefix(c.KeyID, "ed25519:") {
		return fmt.Errorf("%w: key ID %q must start with \"ed25519:\"", ErrConfig, c.KeyID)
	}
	if c.TURN.TTL == 0 {
		c.TURN.TTL = time.Hour
	}
	if len(c.TURN.URIs) > 0 && c.TURN.SharedSecret == "" {
		return fmt.Errorf("%w: TURN URIs are configured without a shared secret", ErrConfig)
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = 1 << 20
	}
	rl := &c.RateLimit
	if rl.SendPerSecond == 0 {
		rl.SendPerSecond = 50
	}
	if rl.SendBurst == 0 {
		rl.SendBurst = 200
	}
	if rl.LoginPerSecond == 0 {
		rl.LoginPerSecond = 1
	}
	if rl.LoginBurst == 0 {
		rl.LoginBurst = 10
	}
	if rl.LoginAccountPerSecond == 0 {
		rl.LoginAccountPerSecond = 1.0 / 30
	}
	if rl.LoginAccountBurst == 0 {
		rl.LoginAccountBurst = 5
	}
	if rl.RegisterPerSecond == 0 {
		rl.RegisterPerSecond = 1
	}
	if rl.RegisterBurst == 0 {
		rl.RegisterBurst = 10
	}
	if rl.FederationPerSecond == 0 {
		rl.FederationPerSecond = 100
	}
	if rl.FederationBurst == 0 {
		rl.FederationBurst = 500
	}
	switch {
	case c.Clock == nil && c.Now == nil:
		c.Clock = clock.Real()
	case c.Clock == nil:
		c.Clock = clock.WithNow(c.Now)
	}
	c.Now = c.Clock.Now
	if c.Notifier == nil {
		c.Notifier = hsync.NewLocalNotifier(0)
	}
	if c.Ephemeral == nil {
		c.Ephemeral = hsync.NewLocalEphemeral(c.Clock)
	}
	if c.Push.RetryMin <= 0 {
		c.Push.RetryMin = time.Second
	}
	if c.Push.RetryMax < c.Push.RetryMin {
		c.Push.RetryMax = max(10*time.Minute, c.Push.RetryMin)
	}
	if _, err := federation.NewAddrPolicy(c.Push.AllowNetworks); err != nil {
		return fmt.Errorf("%w: push: %v", ErrConfig, err)
	}
	if err := c.RTC.validate(); err != nil {
		return err
	}
	if err := c.Federation.Validate(); err != nil {
		return fmt.Errorf("%w: federation: %v", ErrConfig, err)
	}
	return nil
}

// ClientHandler serves the client-server API (/_matrix/client, /.well-known).
func (s *Server) ClientHandler() http.Handler { return s.echo }

// Ready reports whether the database is reachable.
func (s *Server) Ready(ctx context.Context) error { return s.db.Ping(ctx) }

// Shutdown wakes every long-poll (/sync) so that in-flight requests return
// and an http.Server's Shutdown can finish. It is safe to call twice.
func (s *Server) Shutdown() {
	select {
	case <-s.shutdown:
	default:
		close(s.shutdown)
	}
}

// Close releases the database.
func (s *Server) Close() error {
	s.Shutdown()
	s.rtcDelegates.stop()
	s.delayed.stop()
	s.push.Close()
	s.fed.Close()
	return s.db.Close()
}

func (s *Server) nowMS() int64 { return s.cfg.Now().UnixMilli() }
