package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// envPrefix starts every environment variable switchboard reads.
const envPrefix = "SWITCHBOARD_"

// option is one setting that can come from the environment and from a flag.
// The environment variable is SWITCHBOARD_ plus the flag name in upper case
// with '-' as '_' (--media-port: SWITCHBOARD_MEDIA_PORT).
type option struct {
	flag   string // flag name without dashes
	key    string // YAML key, for messages
	help   string
	isBool bool
	set    func(c *Config, v string) error
}

func (o option) env() string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(o.flag, "-", "_"))
}

// options is the table of settings overridable by environment and flags.
// It is built by a function, not kept in a package variable.
func options() []option {
	str := func(p func(*Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { *p(c) = v; return nil }
	}
	list := func(p func(*Config) *[]string) func(*Config, string) error {
		return func(c *Config, v string) error { *p(c) = splitList(v); return nil }
	}
	boolean := func(p func(*Config) *bool) func(*Config, string) error {
		return func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("must be true or false, got %q", v)
			}
			*p(c) = b
			return nil
		}
	}
	integer := func(p func(*Config) *int) func(*Config, string) error {
		return func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("must be an integer, got %q", v)
			}
			*p(c) = n
			return nil
		}
	}
	duration := func(p func(*Config) *time.Duration) func(*Config, string) error {
		return func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("must be a duration such as 30s or 1h, got %q", v)
			}
			*p(c) = d
			return nil
		}
	}
	port := func(p func(*Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { return setPort(p(c), v) }
	}
	return []option{
		{flag: "server-name", key: "server_name", help: "Matrix server name, e.g. example.org", set: str(func(c *Config) *string { return &c.ServerName })},
		{flag: "public-base-url", key: "public_base_url", help: "client API URL advertised in /.well-known/matrix/client", set: str(func(c *Config) *string { return &c.PublicBaseURL })},
		{flag: "public-ip", key: "public_ip", help: "this machine's public IP, advertised for TURN and SFU media", set: str(func(c *Config) *string { return &c.PublicIP })},
		{flag: "data-dir", key: "data_dir", help: "directory for keys, secrets and the SQLite database", set: str(func(c *Config) *string { return &c.DataDir })},
		{flag: "database", key: "database", help: "postgres://user:pass@host/db or sqlite:PATH", set: str(func(c *Config) *string { return &c.Database })},
		{flag: "redis", key: "redis", help: "redis:// URL shared by the nodes of one server (needs a postgres:// database)", set: str(func(c *Config) *string { return &c.Redis })},
		{flag: "node-id", key: "node_id", help: "this node's name among several (default: generated)", set: str(func(c *Config) *string { return &c.NodeID })},
		{flag: "signing-key-file", key: "signing_key_file", help: "ed25519 signing key file (Synapse format)", set: str(func(c *Config) *string { return &c.SigningKeyFile })},
		{flag: "shutdown-timeout", key: "shutdown_timeout", help: "how long in-flight requests may run after SIGTERM", set: duration(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
		{flag: "log-level", key: "log.level", help: "debug, info, warn or error", set: str(func(c *Config) *string { return &c.Log.Level })},
		{flag: "log-format", key: "log.format", help: "json or text", set: str(func(c *Config) *string { return &c.Log.Format })},
		{flag: "registration", key: "registration.mode", help: "open, token or closed", set: str(func(c *Config) *string { return &c.Registration.Mode })},
		{flag: "registration-tokens", key: "registration.tokens", help: "comma-separated registration tokens", set: list(func(c *Config) *[]string { return &c.Registration.Tokens })},
		{flag: "registration-shared-secret", key: "registration.shared_secret", help: "secret for switchboard register (prefer the environment)", set: str(func(c *Config) *string { return &c.Registration.SharedSecret })},
		{flag: "client-listen", key: "client.listen", help: "client API host:port", set: str(func(c *Config) *string { return &c.Client.Listen })},
		{flag: "client-tls-cert", key: "client.tls_cert", help: "PEM certificate for the client API (optional)", set: str(func(c *Config) *string { return &c.Client.TLSCert })},
		{flag: "client-tls-key", key: "client.tls_key", help: "PEM key for the client API (optional)", set: str(func(c *Config) *string { return &c.Client.TLSKey })},
		{flag: "federation-listen", key: "federation.listen", help: "federation host:port (TLS); empty turns it off", set: str(func(c *Config) *string { return &c.Federation.Listen })},
		{flag: "federation-tls-cert", key: "federation.tls_cert", help: "PEM certificate for federation", set: str(func(c *Config) *string { return &c.Federation.TLSCert })},
		{flag: "federation-tls-key", key: "federation.tls_key", help: "PEM key for federation", set: str(func(c *Config) *string { return &c.Federation.TLSKey })},
		{flag: "metrics-listen", key: "metrics.listen", help: "metrics/health host:port; empty turns it off", set: str(func(c *Config) *string { return &c.Metrics.Listen })},
		{flag: "turn", key: "turn.enabled", isBool: true, help: "run the TURN relay", set: boolean(func(c *Config) *bool { return &c.TURN.Enabled })},
		{flag: "turn-listen", key: "turn.listen", help: "TURN UDP and TCP host:port", set: str(func(c *Config) *string { return &c.TURN.Listen })},
		{flag: "turn-tls-listen", key: "turn.tls_listen", help: "TURN over TLS host:port; empty turns it off", set: str(func(c *Config) *string { return &c.TURN.TLSListen })},
		{flag: "turn-shared-secret", key: "turn.shared_secret", help: "TURN REST shared secret (prefer the environment)", set: str(func(c *Config) *string { return &c.TURN.SharedSecret })},
		{flag: "turn-relay-ip", key: "turn.relay_ip", help: "address put in TURN relayed addresses", set: str(func(c *Config) *string { return &c.TURN.RelayIP })},
		{flag: "turn-uris", key: "turn.uris", help: "comma-separated turn:/turns: URIs handed to clients", set: list(func(c *Config) *[]string { return &c.TURN.URIs })},
		{flag: "turn-relay-ports", key: "turn.relay_port_min", help: "TURN relay port range MIN-MAX, e.g. 49152-65535 (open it in the firewall)", set: func(c *Config, v string) error {
			return setPortRange(&c.TURN.RelayPortMin, &c.TURN.RelayPortMax, v)
		}},
		{flag: "turn-allow-cidrs", key: "turn.allow_cidrs", help: "comma-separated peer prefixes TURN may relay to despite the deny table", set: list(func(c *Config) *[]string { return &c.TURN.AllowCIDRs })},
		{flag: "turn-user-quota", key: "turn.user_quota", help: "TURN allocations per user", set: integer(func(c *Config) *int { return &c.TURN.UserQuota })},
		{flag: "turn-total-quota", key: "turn.total_quota", help: "TURN allocations in total", set: integer(func(c *Config) *int { return &c.TURN.TotalQuota })},
		{flag: "sfu", key: "sfu.enabled", isBool: true, help: "run the SFU", set: boolean(func(c *Config) *bool { return &c.SFU.Enabled })},
		{flag: "media-port", key: "sfu.udp_listen", help: "SFU media UDP port (ICE UDP mux)", set: port(func(c *Config) *string { return &c.SFU.UDPListen })},
		{flag: "media-tcp-port", key: "sfu.tcp_listen", help: "SFU ICE-TCP port", set: port(func(c *Config) *string { return &c.SFU.TCPListen })},
		{flag: "media-udp-listen", key: "sfu.udp_listen", help: "SFU media UDP host:port", set: str(func(c *Config) *string { return &c.SFU.UDPListen })},
		{flag: "media-tcp-listen", key: "sfu.tcp_listen", help: "SFU ICE-TCP host:port; empty turns it off", set: str(func(c *Config) *string { return &c.SFU.TCPListen })},
		{flag: "pprof", key: "metrics.pprof", isBool: true, help: "serve /debug/pprof/ on the metrics listener", set: boolean(func(c *Config) *bool { return &c.Metrics.Pprof })},
		{flag: "rate-limit", key: "limits.rate_limit.disabled", isBool: true, help: "apply request rate limits (false for load tests)", set: func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("must be true or false, got %q", v)
			}
			c.Limits.RateLimit.Disabled = !b
			return nil
		}},
	}
}

// setPort replaces the port of a host:port listen address, keeping the host
// (":7882" when it was empty).
func setPort(addr *string, v string) error {
	p, err := strconv.Atoi(v)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("must be a port number 0-65535, got %q", v)
	}
	host := ""
	if *addr != "" {
		if h, _, err := net.SplitHostPort(*addr); err == nil {
			host = h
		}
	}
	*addr = net.JoinHostPort(host, strconv.Itoa(p))
	return nil
}

// setPortRange parses "MIN-MAX" (or one port) into min and max; the
// range's order and bounds are checked by validation.
func setPortRange(lo, hi *int, v string) error {
	a, b, found := strings.Cut(strings.TrimSpace(v), "-")
	if !found {
		b = a
	}
	pa, errA := strconv.Atoi(strings.TrimSpace(a))
	pb, errB := strconv.Atoi(strings.TrimSpace(b))
	if errA != nil || errB != nil || pa < 1 || pb > 65535 || pa > pb {
		return fmt.Errorf("must be a port range such as 49152-65535, got %q", v)
	}
	*lo, *hi = pa, pb
	return nil
}

// splitList splits a comma-separated value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// serveFlags is the parsed command line of `switchboard serve`.
type serveFlags struct {
	configPath string
	dev        bool
	addrFile   string
	// set holds the option flags in command-line order; they are applied
	// after the file and the environment.
	set []setting
}

type setting struct {
	opt   option
	value string
}

// parseServeFlags parses serve's flags. Option flags are recorded, not
// applied, so that the file and environment can be layered under them.
func parseServeFlags(args []string, env func(string) string, errOut io.Writer) (*serveFlags, *flag.FlagSet, error) {
	sf := &serveFlags{}
	fs := flag.NewFlagSet("switchboard serve", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.StringVar(&sf.configPath, "config", env(envPrefix+"CONFIG"), "YAML configuration file (env SWITCHBOARD_CONFIG)")
	fs.BoolVar(&sf.dev, "dev", false, "development mode: 127.0.0.1, SQLite in ./switchboard-data, open registration; NOT for production")
	fs.StringVar(&sf.addrFile, "addr-file", "", "write the bound listen addresses as JSON to this file once serving")
	addOptionFlags(fs, &sf.set)
	fs.Usage = func() {
		fmt.Fprint(errOut, "Usage: switchboard serve [--dev | --config FILE] [flags]\n\n"+
			"Settings are layered: built-in defaults (production, or --dev), then the\n"+
			"YAML file, then SWITCHBOARD_* environment variables, then these flags.\n"+
			"Listen addresses are host:port; port 0 picks a free port (see --addr-file).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, fs, err
	}
	if fs.NArg() > 0 {
		return nil, fs, fmt.Errorf("%w: serve takes no arguments, got %q", ErrUsage, fs.Args())
	}
	return sf, fs, nil
}

// buildConfig layers defaults < file < environment < flags, fills derived
// defaults and validates. Nothing is opened besides the config file.
func buildConfig(sf *serveFlags, env func(string) string) (Config, error) {
	cfg := defaultConfig()
	if sf.dev {
		cfg = devConfig()
	}
	if err := layerConfig(&cfg, sf.configPath, env, sf.set); err != nil {
		return Config{}, err
	}
	if !sf.dev && sf.configPath == "" && cfg.ServerName == "" {
		return Config{}, fmt.Errorf("%w: give --config FILE, or --dev to try switchboard on this machine.\n"+
			"To create a configuration file, run:\n"+
			"  switchboard generate-config --server-name example.org > switchboard.yaml\n"+
			"  switchboard serve --config switchboard.yaml", ErrNoConfig)
	}
	cfg.resolvePaths()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// layerConfig puts the file (when configPath is set), then the environment,
// then the recorded flags over cfg, which holds the defaults. serve and the
// commands that must find serve's listeners (register, doctor) share it, so
// they agree on where everything is.
func layerConfig(cfg *Config, configPath string, env func(string) string, set []setting) error {
	if configPath != "" {
		if err := loadConfigFile(configPath, cfg); err != nil {
			return err
		}
	}
	var errs []error
	for _, o := range options() {
		v := env(o.env())
		if v == "" {
			continue
		}
		if err := o.set(cfg, v); err != nil {
			errs = append(errs, &fieldError{Key: o.key, Msg: fmt.Sprintf("environment %s: %v", o.env(), err)})
		}
	}
	for _, s := range set {
		if err := s.opt.set(cfg, s.value); err != nil {
			errs = append(errs, &fieldError{Key: s.opt.key, Msg: fmt.Sprintf("flag --%s: %v", s.opt.flag, err)})
		}
	}
	return errors.Join(errs...)
}

// addOptionFlags defines every option of the table on fs, except names fs
// already has; a flag given is recorded in *set (in command-line order), to
// be applied by layerConfig.
func addOptionFlags(fs *flag.FlagSet, set *[]setting) {
	for _, o := range options() {
		if fs.Lookup(o.flag) != nil {
			continue
		}
		record := func(v string) error {
			*set = append(*set, setting{o, v})
			return nil
		}
		help := fmt.Sprintf("%s (yaml %s, env %s)", o.help, o.key, o.env())
		if o.isBool {
			fs.BoolFunc(o.flag, help, record)
		} else {
			fs.Func(o.flag, help, record)
		}
	}
}
