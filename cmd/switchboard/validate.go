package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Validate checks every value before any file or socket is opened. It
// returns all problems at once, each naming its YAML key, joined with
// errors.Join; errors.Is(err, ErrConfig) is true.
func (c *Config) Validate() error {
	var v validator
	if c.ServerName == "" {
		v.add("server_name", "is required (the Matrix server name, e.g. example.org); run `switchboard generate-config --server-name example.org` to start from a complete file")
	} else if _, _, err := splitServerName(c.ServerName); err != nil {
		v.add("server_name", err.Error())
	}
	if c.PublicBaseURL != "" {
		u, err := url.Parse(c.PublicBaseURL)
		switch {
		case err != nil:
			v.add("public_base_url", "is not a URL: "+err.Error())
		case u.Scheme != "http" && u.Scheme != "https":
			v.addf("public_base_url", "must start with https:// or http://, got %q", c.PublicBaseURL)
		case u.Host == "":
			v.addf("public_base_url", "has no host: %q", c.PublicBaseURL)
		}
	}
	v.ip("public_ip", c.PublicIP)
	c.MatrixRTC.validate(&v)
	if c.DataDir == "" {
		v.add("data_dir", "is required")
	}
	v.database(c.Database)
	if c.Redis != "" {
		u, err := url.Parse(c.Redis)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			v.addf("redis", "must be a redis:// or rediss:// URL with a host, got %q", c.Redis)
		}
		// Several nodes share one database; SQLite is one process's file.
		if !isPostgresURL(c.Database) {
			v.add("redis", "runs several nodes, which needs a PostgreSQL database: set database (--database) to postgres://..., or remove redis (--redis) to run one node on SQLite")
		}
	}
	if c.NodeID != "" && !validNodeID(c.NodeID) {
		v.addf("node_id", "must be 1 to 64 letters, digits, '.', '_' or '-', got %q", c.NodeID)
	}
	if c.SigningKeyFile == "" {
		v.add("signing_key_file", "is required")
	}
	if c.ShutdownTimeout <= 0 {
		v.addf("shutdown_timeout", "must be positive, got %s", c.ShutdownTimeout)
	}
	if _, err := parseLogLevel(c.Log.Level); err != nil {
		v.addf("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		v.addf("log.format", "must be json or text, got %q", c.Log.Format)
	}
	c.validateRegistration(&v)
	c.validateListeners(&v)
	c.validateTURN(&v)
	if c.Limits.MaxRequestBytes < 65536 {
		v.addf("limits.max_request_bytes", "must be at least 65536 (the largest Matrix event), got %d", c.Limits.MaxRequestBytes)
	}
	rl := c.Limits.RateLimit
	if rl.SendPerSecond < 0 || rl.LoginPerSecond < 0 || rl.SendBurst < 0 || rl.LoginBurst < 0 ||
		rl.FederationPerSecond < 0 || rl.FederationBurst < 0 || rl.LoginAccountPerSecond < 0 || rl.LoginAccountBurst < 0 ||
		rl.RegisterPerSecond < 0 || rl.RegisterBurst < 0 {
		v.add("limits.rate_limit", "rates and bursts must not be negative")
	}
	return v.err()
}

func (c *Config) validateRegistration(v *validator) {
	switch c.Registration.Mode {
	case "open", "closed":
	case "token":
		if len(c.Registration.Tokens) == 0 {
			v.add("registration.tokens", "must list at least one token when registration.mode is token")
		}
	default:
		v.addf("registration.mode", "must be open, token or closed, got %q", c.Registration.Mode)
	}
	for i, t := range c.Registration.Tokens {
		if strings.TrimSpace(t) == "" {
			v.addf(fmt.Sprintf("registration.tokens[%d]", i), "is empty")
		}
	}
	v.secret("registration.shared_secret", c.Registration.SharedSecret)
}

// validateListeners checks each listen address and that no two listeners of
// the same transport claim the same port.
func (c *Config) validateListeners(v *validator) {
	type use struct {
		key, addr, proto string
	}
	var uses []use
	listen := func(key, addr, proto string, required bool) {
		if addr == "" {
			if required {
				v.add(key, "is required (host:port, e.g. :8008 or 127.0.0.1:8008)")
			}
			return
		}
		if err := checkListenAddr(addr); err != nil {
			v.add(key, err.Error())
			return
		}
		uses = append(uses, use{key, addr, proto})
	}
	listen("client.listen", c.Client.Listen, "tcp", true)
	if (c.Client.TLSCert == "") != (c.Client.TLSKey == "") {
		v.add("client.tls_cert", "client.tls_cert and client.tls_key must be set together")
	}
	listen("federation.listen", c.Federation.Listen, "tcp", false)
	if c.Federation.Listen != "" && (c.Federation.TLSCert == "" || c.Federation.TLSKey == "") {
		v.add("federation.tls_cert", "federation.tls_cert and federation.tls_key are required when federation.listen is set")
	}
	listen("metrics.listen", c.Metrics.Listen, "tcp", false)
	if c.TURN.Enabled {
		listen("turn.listen", c.TURN.Listen, "tcp", true)
		listen("turn.listen", c.TURN.Listen, "udp", true)
		listen("turn.tls_listen", c.TURN.TLSListen, "tcp", false)
	}
	if c.SFU.Enabled {
		listen("sfu.udp_listen", c.SFU.UDPListen, "udp", true)
		listen("sfu.tcp_listen", c.SFU.TCPListen, "tcp", false)
	}
	for i := range uses {
		for j := i + 1; j < len(uses); j++ {
			a, b := uses[i], uses[j]
			if a.proto == b.proto && a.key != b.key && addrsOverlap(a.addr, b.addr) {
				v.addf(b.key, "%s %s is also used by %s", b.proto, b.addr, a.key)
			}
		}
	}
}

func (c *Config) validateTURN(v *validator) {
	t := c.TURN
	if !t.Enabled {
		return
	}
	if t.TLSListen != "" && (t.TLSCert == "" || t.TLSKey == "") {
		v.add("turn.tls_cert", "turn.tls_cert and turn.tls_key are required when turn.tls_listen is set")
	}
	if t.Realm == "" {
		v.add("turn.realm", "is required")
	}
	v.secret("turn.shared_secret", t.SharedSecret)
	if t.CredentialTTL <= 0 {
		v.addf("turn.credential_ttl", "must be positive, got %s", t.CredentialTTL)
	}
	for i, u := range t.URIs {
		if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
			v.addf(fmt.Sprintf("turn.uris[%d]", i), "must start with turn: or turns: (RFC 7065), got %q", u)
		}
	}
	v.ip("turn.relay_ip", t.RelayIP)
	if t.RelayPortMin < 1 || t.RelayPortMin > 65535 {
		v.addf("turn.relay_port_min", "must be 1-65535, got %d", t.RelayPortMin)
	}
	if t.RelayPortMax < 1 || t.RelayPortMax > 65535 {
		v.addf("turn.relay_port_max", "must be 1-65535, got %d", t.RelayPortMax)
	}
	if t.RelayPortMin > t.RelayPortMax {
		v.addf("turn.relay_port_min", "must not exceed turn.relay_port_max (%d > %d)", t.RelayPortMin, t.RelayPortMax)
	}
	for i, s := range t.AllowCIDRs {
		if _, err := netip.ParsePrefix(s); err != nil {
			v.addf(fmt.Sprintf("turn.allow_cidrs[%d]", i), "is not a CIDR prefix: %q", s)
		}
	}
	for i, s := range t.DenyCIDRs {
		if _, err := netip.ParsePrefix(s); err != nil {
			v.addf(fmt.Sprintf("turn.deny_cidrs[%d]", i), "is not a CIDR prefix: %q", s)
		}
	}
	if t.UserQuota < 1 {
		v.addf("turn.user_quota", "must be at least 1, got %d", t.UserQuota)
	}
	if t.TotalQuota < 1 {
		v.addf("turn.total_quota", "must be at least 1, got %d", t.TotalQuota)
	}
	for user, pass := range t.StaticUsers {
		if user == "" || strings.ContainsAny(user, ":\x00") {
			v.addf("turn.static_users", "username %q must be non-empty and contain no ':'", user)
		}
		if len(pass) < 8 {
			v.addf("turn.static_users."+user, "password must be at least 8 characters")
		}
	}
}

// validator collects field errors.
type validator struct{ errs []error }

func (v *validator) add(key, msg string) { v.errs = append(v.errs, &fieldError{Key: key, Msg: msg}) }

func (v *validator) addf(key, format string, args ...any) { v.add(key, fmt.Sprintf(format, args...)) }

func (v *validator) err() error { return errors.Join(v.errs...) }

func (v *validator) ip(key, s string) {
	if s == "" {
		return
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.IsUnspecified() || ip.Zone() != "" {
		v.addf(key, "must be a specific IPv4 or IPv6 address, got %q", s)
	}
}

// minSecretLen is the shortest shared secret accepted; generated ones are
// 64 hex characters.
const minSecretLen = 16

func (v *validator) secret(key, s string) {
	if s != "" && len(s) < minSecretLen {
		v.addf(key, "is too short (%d characters, need at least %d); leave it empty to generate one", len(s), minSecretLen)
	}
}

func (v *validator) database(s string) {
	switch {
	case s == "":
		v.add("database", "is required (postgres://... or sqlite:PATH)")
	case strings.Contains(s, "://"):
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			v.addf("database", "must be a postgres:// URL or a SQLite path, got scheme in %q", redactURL(s))
		}
	case strings.TrimPrefix(strings.TrimPrefix(s, "sqlite:"), "file:") == "":
		v.add("database", "has an empty SQLite path")
	}
}

// redactURL hides a password in a URL for error messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// checkListenAddr accepts host:port where host is empty, an IP literal or
// "localhost", and port is 0-65535 (0: any free port).
func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("must be host:port, got %q", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("port must be 0-65535, got %q", port)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("host must be empty, an IP address or localhost, got %q", host)
		}
	}
	return nil
}

// addrsOverlap reports whether two listen addresses would conflict: the same
// non-zero port on the same host, or on hosts one of which is a wildcard.
func addrsOverlap(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	if pa != pb || pa == "0" {
		return false
	}
	wild := []string{"", "0.0.0.0", "::"}
	return ha == hb || slices.Contains(wild, ha) || slices.Contains(wild, hb)
}

// splitServerName parses a Matrix server name (Matrix spec, Appendices,
// "Server Name"): hostname [":" port], where hostname is an IPv4 literal, a
// bracketed IPv6 literal or a DNS name of letters, digits, "-" and ".".
// Port is 0 when absent.
func splitServerName(s string) (host string, port int, err error) {
	if s == "" || len(s) > 255+1+5 {
		return "", 0, errors.New("must be 1-255 characters of host name, optionally with :port")
	}
	host = s
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, fmt.Errorf("has an unclosed IPv6 bracket: %q", s)
		}
		host = s[:end+1]
		rest := s[end+1:]
		ip, perr := netip.ParseAddr(s[1:end])
		if perr != nil || !ip.Is6() || ip.Zone() != "" {
			return "", 0, fmt.Errorf("has an invalid IPv6 literal: %q", s)
		}
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return "", 0, fmt.Errorf("has text after the IPv6 literal: %q", s)
			}
			port, err = parseServerPort(rest[1:])
		}
		return host, port, err
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host = s[:i]
		if port, err = parseServerPort(s[i+1:]); err != nil {
			return "", 0, err
		}
	}
	if host == "" || len(host) > 255 {
		return "", 0, fmt.Errorf("has an empty or too long host: %q", s)
	}
	for _, r := range host {
		ok := r == '-' || r == '.' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !ok {
			return "", 0, fmt.Errorf("may contain only letters, digits, '-' and '.' in the host, got %q", s)
		}
	}
	return host, port, nil
}

func parseServerPort(s string) (int, error) {
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("port must be 1-5 digits, got %q", s)
	}
	p := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("port must be digits, got %q", s)
		}
		p = p*10 + int(r-'0')
	}
	if p < 1 || p > 65535 {
		return 0, fmt.Errorf("port must be 1-65535, got %q", s)
	}
	return p, nil
}
