package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// healthTimeout bounds `switchboard health`: a container runtime's probe
// must not hang.
const healthTimeout = 5 * time.Second

// health runs `switchboard health`: it asks the running server's client
// listener for /health (or /ready with --ready) and succeeds on 200. It is
// the container HEALTHCHECK (the image has no curl): the listener is found
// as serve finds it, from --config or SWITCHBOARD_CONFIG, the environment
// and the same flags.
func (a *app) health(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("switchboard health", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	var url, configPath string
	var ready bool
	var set []setting
	fs.StringVar(&url, "url", "", "client API base URL (default: the client listener serve would bind)")
	fs.StringVar(&configPath, "config", a.getenv(envPrefix+"CONFIG"), "YAML configuration file (env SWITCHBOARD_CONFIG)")
	fs.BoolVar(&ready, "ready", false, "ask /ready (database, TURN socket) instead of /health (process alive)")
	addOptionFlags(fs, &set)
	fs.Usage = func() {
		fmt.Fprint(a.stderr, "Usage: switchboard health [--config FILE] [--ready] [--url URL] [serve's flags]\n\n"+
			"Exits 0 when the running server answers /health (or /ready) with 200, else 1.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: health takes no arguments, got %q", ErrUsage, fs.Args())
	}
	if url == "" {
		cfg := defaultConfig()
		if err := layerConfig(&cfg, configPath, a.getenv, set); err != nil {
			return err
		}
		url = httpURL(cfg.Client.Listen, cfg.Client.TLSCert != "")
	}
	path := "/health"
	if ready {
		path = "/ready"
	}
	target := strings.TrimRight(url, "/") + path
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	// The probe runs next to the server and sends nothing secret; the
	// client certificate is for the public name, not 127.0.0.1, so it is
	// not verified here.
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // loopback liveness probe
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("%w: cannot reach %s: %w", ErrUnhealthy, target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	text := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s: %s %s", ErrUnhealthy, target, resp.Status, text)
	}
	fmt.Fprintf(a.stdout, "%s: %s\n", target, text)
	return nil
}
