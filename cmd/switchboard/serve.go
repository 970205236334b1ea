package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver"
	"github.com/switchboard-chat/switchboard/sfu"
	"github.com/switchboard-chat/switchboard/web"
)

// serve runs `switchboard serve`: configuration is layered and validated,
// keys and secrets are loaded or generated, then sockets are bound and the
// components wired. It returns nil after a clean shutdown on ctx's end.
func (a *app) serve(ctx context.Context, args []string) error {
	sf, _, err := parseServeFlags(args, a.getenv, a.stderr)
	if err != nil {
		if errors.Is(err, ErrUsage) || errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	cfg, err := buildConfig(sf, a.getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(a.stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if sf.dev {
		log.Warn("development mode: not for production (open registration, self-signed keys, 127.0.0.1 only)")
		for _, key := range exposedListeners(&cfg) {
			log.Warn("development mode with a listener on a non-loopback address: anyone who reaches it may register", "key", key)
		}
	}
	if cfg.Redis != "" {
		log.Warn("redis is configured, but this build runs as a single process and does not use it", "redis", redactURL(cfg.Redis))
	}
	mat, err := prepareMaterial(&cfg, sf.dev, log)
	if err != nil {
		return err
	}
	socks, err := bindSockets(&cfg, mat)
	if err != nil {
		return err
	}
	defer socks.close()
	addrs := socks.addrs()

	reg, err := newRegistry()
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	var checks []readyCheck
	var node *sfu.SFU
	if cfg.SFU.Enabled {
		node, err = startSFU(&cfg, socks, log, reg)
		if err != nil {
			return err
		}
		defer func() {
			if err := node.Close(); err != nil {
				log.Warn("closing SFU", "err", err)
			}
		}()
	}
	if cfg.TURN.Enabled {
		relay, err := startTURN(&cfg, socks, mat.turnSecret, log, reg)
		if err != nil {
			return err
		}
		defer func() {
			if err := relay.Close(); err != nil {
				log.Warn("closing TURN relay", "err", err)
			}
		}()
		checks = append(checks, readyCheck{name: "turn", check: turnProbe(addrs.TURNUDP)})
	}
	hsCfg := homeserverConfig(&cfg, mat, addrs, sf.dev)
	lkBase := hsCfg.PublicBaseURL
	if lkBase == "" {
		lkBase = httpURL(addrs.Client, mat.clientTLS != nil)
	}
	lkIssuer := &liveKitIssuer{}
	if node != nil {
		hsCfg.RTC.LiveKitURLs = []string{liveKitWSURL(lkBase)}
		hsCfg.RTC.TokenIssuer = lkIssuer
	}
	hs, err := homeserver.New(ctx, hsCfg, log, reg)
	if err != nil {
		return fmt.Errorf("homeserver: %w", err)
	}
	defer func() {
		if err := hs.Close(); err != nil {
			log.Error("closing homeserver", "err", err)
		}
	}()
	// The group-call focus answers calls on the SFU; it stops (hanging up
	// its calls) before the homeserver and the SFU close.
	// The focus and the LiveKit adapter share a room's SFU conference
	// and name each other's participants (liveKitPeers).
	var focus *runningFocus
	lkPeers := &liveKitPeers{}
	if node != nil {
		if focus, err = startFocus(hs, node, lkPeers, log, reg); err != nil {
			return err
		}
		defer focus.stop()
	}

	// MatrixRTC with LiveKit clients (livekitwire.go).
	var lk *liveKit
	if node != nil {
		if lk, err = startLiveKit(&cfg, lkBase, hs, node, focus.focus, log); err != nil {
			return err
		}
		lkIssuer.tokens.Store(lk.tokens)
		lkPeers.sig.Store(lk.sig)
		defer lk.stop()
	}

	rd := &readiness{checks: append([]readyCheck{{name: "database", check: hs.Ready}}, checks...)}
	clientMux := http.NewServeMux()
	rd.operatorRoutes(clientMux)
	for _, prefix := range []string{"/_matrix/", "/_synapse/", "/.well-known/"} {
		clientMux.Handle(prefix, hs.ClientHandler())
	}
	if lk != nil {
		lk.routes(clientMux)
	}
	clientMux.Handle("/", web.Handler())

	var servers []served
	servers = append(servers, served{
		name: "client", ln: socks.client, tls: mat.clientTLS,
		srv: newHTTPServer(stallGuard(clientMux, stallTimeout), log),
	})
	if socks.federation != nil {
		servers = append(servers, served{
			name: "federation", ln: socks.federation, tls: mat.federationTLS,
			srv: newHTTPServer(stallGuard(federationHandler(hs), stallTimeout), log),
		})
	}
	if socks.metrics != nil {
		servers = append(servers, served{
			name: "metrics", ln: socks.metrics,
			srv: newHTTPServer(metricsHandler(reg, rd, cfg.Metrics.Pprof), log),
		})
	}

	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	for _, s := range servers {
		ln := s.ln
		if s.tls != nil {
			ln = tls.NewListener(ln, s.tls)
		}
		wg.Go(func() {
			if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%w: %s listener: %w", ErrServe, s.name, err)
			}
		})
	}
	// The servers own the listeners now; Shutdown closes them.
	socks.client, socks.federation, socks.metrics = nil, nil, nil

	log.Info("serving", "server_name", cfg.ServerName, "client", addrs.Client, "federation", addrs.Federation,
		"metrics", addrs.Metrics, "turn_udp", addrs.TURNUDP, "turn_tcp", addrs.TURNTCP, "turn_tls", addrs.TURNTLS,
		"media_udp", addrs.MediaUDP, "media_tcp", addrs.MediaTCP, "data_dir", cfg.DataDir)
	printBanner(a.stdout, &cfg, addrs, hsCfg, bannerInfo{dev: sf.dev, self: a.self, configPath: sf.configPath})
	if sf.addrFile != "" {
		if err := writeAddrFile(sf.addrFile, addrs); err != nil {
			log.Error("writing --addr-file", "path", sf.addrFile, "err", err)
		}
	}
	if a.onServing != nil {
		a.onServing(addrs)
	}

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	case serveErr = <-errc:
		log.Error("listener failed; shutting down", "err", serveErr)
	}
	rd.stopping.Store(true)
	focus.stop() // hangups go out while clients still sync
	hs.Shutdown()
	shutdownServers(servers, cfg.ShutdownTimeout, log)
	wg.Wait()
	log.Info("stopped")
	return serveErr
}

// served is one HTTP server and the listener it serves.
type served struct {
	name string
	ln   net.Listener
	tls  *tls.Config
	srv  *http.Server
}

// newHTTPServer has timeouts that leave room for /sync long-polls (no write
// timeout) while bounding slow headers and idle connections; stallGuard
// bounds bodies and answers that stop moving.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// net/http logs client mistakes (TLS handshake errors, bad
		// requests): Debug, not Error.
		ErrorLog: slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelDebug),
	}
}

// shutdownServers stops all servers at once, letting in-flight requests end
// within timeout, then closes whatever is left.
func shutdownServers(servers []served, timeout time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if err := s.srv.Shutdown(ctx); err != nil {
				log.Warn("in-flight requests cut off at shutdown timeout", "listener", s.name, "err", err)
				_ = s.srv.Close()
			}
		})
	}
	wg.Wait()
}

// federationHandler is the handler for the federation listener. The
// homeserver serves the server-server API from its client handler until it
// offers a separate one.
func federationHandler(hs *homeserver.Server) http.Handler {
	if f, ok := any(hs).(interface{ FederationHandler() http.Handler }); ok {
		return f.FederationHandler()
	}
	return hs.ClientHandler()
}

// homeserverConfig maps the validated configuration and the prepared
// material onto homeserver.Config.
func homeserverConfig(cfg *Config, mat *material, addrs boundAddrs, dev bool) homeserver.Config {
	hc := homeserver.Config{
		ServerName:               cfg.ServerName,
		PublicBaseURL:            cfg.PublicBaseURL,
		Database:                 cfg.Database,
		Registration:             cfg.Registration.Mode,
		RegistrationTokens:       cfg.Registration.Tokens,
		RegistrationSharedSecret: mat.registrationSecret,
		SigningKey:               mat.key.Key,
		KeyID:                    mat.key.ID(),
		MaxRequestBytes:          cfg.Limits.MaxRequestBytes,
		RateLimit: homeserver.RateLimitConfig{
			SendPerSecond:         cfg.Limits.RateLimit.SendPerSecond,
			SendBurst:             cfg.Limits.RateLimit.SendBurst,
			LoginPerSecond:        cfg.Limits.RateLimit.LoginPerSecond,
			LoginBurst:            cfg.Limits.RateLimit.LoginBurst,
			LoginAccountPerSecond: cfg.Limits.RateLimit.LoginAccountPerSecond,
			LoginAccountBurst:     cfg.Limits.RateLimit.LoginAccountBurst,
			RegisterPerSecond:     cfg.Limits.RateLimit.RegisterPerSecond,
			RegisterBurst:         cfg.Limits.RateLimit.RegisterBurst,
			FederationPerSecond:   cfg.Limits.RateLimit.FederationPerSecond,
			FederationBurst:       cfg.Limits.RateLimit.FederationBurst,
			Disabled:              cfg.Limits.RateLimit.Disabled,
		},
		RTC: homeserverRTC(cfg.MatrixRTC),
		Federation: homeserver.FederationConfig{
			SkipTLSVerify: cfg.Federation.SkipTLSVerify,
			AllowNetworks: cfg.Federation.AllowCIDRs,
		},
		Push: homeserver.PushConfig{AllowNetworks: cfg.Push.AllowCIDRs},
	}
	if hc.PublicBaseURL == "" && dev {
		hc.PublicBaseURL = httpURL(addrs.Client, mat.clientTLS != nil)
	}
	if uris := turnURIs(cfg, addrs); len(uris) > 0 {
		hc.TURN = homeserver.TURNConfig{URIs: uris, SharedSecret: mat.turnSecret, TTL: cfg.TURN.CredentialTTL}
	}
	return hc
}

// httpURL makes a URL for a bound address, showing a wildcard host as
// 127.0.0.1 (the address a local user can open).
func httpURL(addr string, secure bool) string {
	scheme := "http"
	if secure {
		scheme = "https"
	}
	return scheme + "://" + displayAddr(addr)
}

func displayAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// hostOf returns the host of host:port, or s itself.
func hostOf(s string) string {
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h
	}
	return s
}

// exposedListeners names the listen keys whose host is not a loopback
// address.
func exposedListeners(cfg *Config) []string {
	var out []string
	for _, l := range []struct{ key, addr string }{
		{"client.listen", cfg.Client.Listen},
		{"federation.listen", cfg.Federation.Listen},
		{"metrics.listen", cfg.Metrics.Listen},
		{"turn.listen", cfg.TURN.Listen},
		{"sfu.udp_listen", cfg.SFU.UDPListen},
	} {
		if l.addr == "" {
			continue
		}
		host := hostOf(l.addr)
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			out = append(out, l.key)
		}
	}
	return out
}
