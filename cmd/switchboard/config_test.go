package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// envMap is a fake process environment for in-process commands.
func envMap(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// loadFor runs the serve flag parsing and layering without serving.
func loadFor(t *testing.T, args []string, env map[string]string) (Config, error) {
	t.Helper()
	var stderr bytes.Buffer
	sf, _, err := parseServeFlags(args, envMap(env), &stderr)
	if err != nil {
		return Config{}, err
	}
	return buildConfig(sf, envMap(env))
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigLayering(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "c.yaml", `
server_name: file.example
client:
  listen: "127.0.0.1:1001"
sfu:
  udp_listen: "10.0.0.1:7000"
registration:
  mode: token
  tokens: [file-token]
log:
  level: warn
`)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		// want is checked on the loaded config.
		want func(c Config) []any
		vals []any
	}{
		{
			name: "file only",
			args: []string{"--config", file},
			want: func(c Config) []any {
				return []any{c.ServerName, c.Client.Listen, c.Registration.Mode, c.Log.Level, c.SFU.UDPListen}
			},
			vals: []any{"file.example", "127.0.0.1:1001", "token", "warn", "10.0.0.1:7000"},
		},
		{
			name: "env beats file",
			args: []string{"--config", file},
			env: map[string]string{
				"SWITCHBOARD_SERVER_NAME":   "env.example",
				"SWITCHBOARD_CLIENT_LISTEN": "127.0.0.1:1002",
				"SWITCHBOARD_LOG_LEVEL":     "error",
				"SWITCHBOARD_MEDIA_PORT":    "7100",
			},
			want: func(c Config) []any {
				return []any{c.ServerName, c.Client.Listen, c.Registration.Mode, c.Log.Level, c.SFU.UDPListen}
			},
			vals: []any{"env.example", "127.0.0.1:1002", "token", "error", "10.0.0.1:7100"},
		},
		{
			name: "flag beats env beats file",
			args: []string{"--config", file, "--client-listen", "127.0.0.1:1003", "--registration", "closed", "--media-port", "7200"},
			env: map[string]string{
				"SWITCHBOARD_CLIENT_LISTEN": "127.0.0.1:1002",
				"SWITCHBOARD_REGISTRATION":  "open",
				"SWITCHBOARD_MEDIA_PORT":    "7100",
			},
			want: func(c Config) []any {
				return []any{c.ServerName, c.Client.Listen, c.Registration.Mode, c.SFU.UDPListen}
			},
			vals: []any{"file.example", "127.0.0.1:1003", "closed", "10.0.0.1:7200"},
		},
		{
			name: "config path from the environment",
			env:  map[string]string{"SWITCHBOARD_CONFIG": file},
			want: func(c Config) []any { return []any{c.ServerName} },
			vals: []any{"file.example"},
		},
		{
			name: "dev defaults",
			args: []string{"--dev"},
			want: func(c Config) []any {
				return []any{c.ServerName, c.Registration.Mode, c.Client.Listen, c.Log.Format, c.Database, c.TURN.RelayIP}
			},
			vals: []any{"localhost", "open", "127.0.0.1:8008", "text", "sqlite:" + filepath.Join("switchboard-data", "switchboard.db"), "127.0.0.1"},
		},
		{
			name: "production defaults from a server name alone",
			args: []string{"--server-name", "example.org"},
			want: func(c Config) []any {
				return []any{c.Registration.Mode, c.Client.Listen, c.Federation.Listen, c.Metrics.Listen, c.TURN.Listen, c.TURN.TLSListen, c.SFU.UDPListen, c.SFU.TCPListen, c.Log.Format, c.TURN.Realm}
			},
			vals: []any{"closed", ":8008", ":8448", "127.0.0.1:9090", ":3478", ":5349", ":7882", ":7881", "json", "example.org"},
		},
		{
			name: "lists and booleans from the environment",
			args: []string{"--dev", "--sfu=false"},
			env: map[string]string{
				"SWITCHBOARD_REGISTRATION":        "token",
				"SWITCHBOARD_REGISTRATION_TOKENS": "a, b,,c",
				"SWITCHBOARD_TURN":                "false",
			},
			want: func(c Config) []any { return []any{c.Registration.Tokens, c.TURN.Enabled, c.SFU.Enabled} },
			vals: []any{[]string{"a", "b", "c"}, false, false},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadFor(t, tc.args, tc.env)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			got := tc.want(cfg)
			if !reflect.DeepEqual(got, tc.vals) {
				t.Errorf("got %#v, want %#v", got, tc.vals)
			}
		})
	}
}

func TestStrictYAMLNamesUnknownKey(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "c.yaml", "server_name: example.org\nturn:\n  enabled: true\n  relay_prot_min: 50000\n")
	_, err := loadFor(t, []string{"--config", file}, nil)
	if err == nil {
		t.Fatal("unknown key accepted")
	}
	if !errors.Is(err, ErrConfig) {
		t.Errorf("error %v is not ErrConfig", err)
	}
	msg := err.Error()
	for _, want := range []string{"turn.relay_prot_min", "line 4", `unknown key "relay_prot_min"`, "relay_port_min", file} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
}

func TestStrictYAMLErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top-level key", "server_name: a.org\nserver_nmae: b.org\n", []string{"server_nmae", "line 2", "unknown key"}},
		{"wrong type", "server_name: a.org\nturn:\n  user_quota: many\n", []string{"turn.user_quota", "line 3", "integer"}},
		{"bad duration", "server_name: a.org\nshutdown_timeout: soon\n", []string{"shutdown_timeout", "duration"}},
		{"section not a mapping", "server_name: a.org\nclient: 8008\n", []string{"client", "mapping"}},
		{"list item type", "server_name: a.org\nturn:\n  allow_cidrs: [[1]]\n", []string{"turn.allow_cidrs[0]"}},
		{"two documents", "server_name: a.org\n---\nserver_name: b.org\n", []string{"more than one YAML document"}},
		{"not a mapping", "- a\n- b\n", []string{"top level must be a mapping"}},
		{"syntax", "server_name: [unclosed\n", []string{"yaml"}},
		{"several at once", "a: 1\nb: 2\n", []string{`"a"`, `"b"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultConfig()
			before := cfg
			err := decodeConfig([]byte(tc.yaml), &cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if !reflect.DeepEqual(cfg, before) {
				t.Error("config changed despite the error")
			}
		})
	}
}

func TestYAMLEmptyAndPartialKeepDefaults(t *testing.T) {
	for _, doc := range []string{"", "# only a comment\n", "turn:\n  listen: \"127.0.0.1:3479\"\n"} {
		cfg := defaultConfig()
		if err := decodeConfig([]byte(doc), &cfg); err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if cfg.TURN.TLSListen != ":5349" || cfg.TURN.CredentialTTL != time.Hour || !cfg.TURN.Enabled {
			t.Errorf("%q: defaults lost: %+v", doc, cfg.TURN)
		}
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		key    string
	}{
		{"server name missing", func(c *Config) { c.ServerName = "" }, "server_name"},
		{"server name bad", func(c *Config) { c.ServerName = "exa mple.org" }, "server_name"},
		{"registration mode", func(c *Config) { c.Registration.Mode = "sometimes" }, "registration.mode"},
		{"token mode without tokens", func(c *Config) { c.Registration.Mode = "token" }, "registration.tokens"},
		{"short secret", func(c *Config) { c.Registration.SharedSecret = "short" }, "registration.shared_secret"},
		{"client listen", func(c *Config) { c.Client.Listen = "8008" }, "client.listen"},
		{"client port", func(c *Config) { c.Client.Listen = ":70000" }, "client.listen"},
		{"client listen host", func(c *Config) { c.Client.Listen = "example.org:8008" }, "client.listen"},
		{"client tls half", func(c *Config) { c.Client.TLSCert = "x.pem" }, "client.tls_cert"},
		{"port conflict", func(c *Config) { c.Metrics.Listen = "127.0.0.1:8008" }, "metrics.listen"},
		{"udp conflict", func(c *Config) { c.SFU.UDPListen = ":3478" }, "sfu.udp_listen"},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format"},
		{"database scheme", func(c *Config) { c.Database = "mysql://u:p@h/db" }, "database"},
		{"redis", func(c *Config) { c.Redis = "http://h" }, "redis"},
		{"redis on sqlite", func(c *Config) { c.Redis = "redis://127.0.0.1:6379/0" }, "redis"},
		{"node id", func(c *Config) { c.NodeID = "a b" }, "node_id"},
		{"public url", func(c *Config) { c.PublicBaseURL = "matrix.example.org" }, "public_base_url"},
		{"public ip", func(c *Config) { c.PublicIP = "0.0.0.0" }, "public_ip"},
		{"relay ports", func(c *Config) { c.TURN.RelayPortMin, c.TURN.RelayPortMax = 60000, 50000 }, "turn.relay_port_min"},
		{"cidr", func(c *Config) { c.TURN.AllowCIDRs = []string{"10.0.0.0/33"} }, "turn.allow_cidrs[0]"},
		{"deny cidr", func(c *Config) { c.TURN.DenyCIDRs = []string{"nope"} }, "turn.deny_cidrs[0]"},
		{"turn uri", func(c *Config) { c.TURN.URIs = []string{"stun:x"} }, "turn.uris[0]"},
		{"turn ttl", func(c *Config) { c.TURN.CredentialTTL = 0 }, "turn.credential_ttl"},
		{"turn quota", func(c *Config) { c.TURN.UserQuota = 0 }, "turn.user_quota"},
		{"static user", func(c *Config) { c.TURN.StaticUsers = map[string]string{"a:b": "password1"} }, "turn.static_users"},
		{"max request", func(c *Config) { c.Limits.MaxRequestBytes = 1000 }, "limits.max_request_bytes"},
		{"negative rate", func(c *Config) { c.Limits.RateLimit.SendPerSecond = -1 }, "limits.rate_limit"},
		{"negative federation rate", func(c *Config) { c.Limits.RateLimit.FederationPerSecond = -1 }, "limits.rate_limit"},
		{"shutdown", func(c *Config) { c.ShutdownTimeout = 0 }, "shutdown_timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := defaultConfig()
			c.ServerName = "example.org"
			c.Client.Listen = "127.0.0.1:8008"
			tc.mutate(&c)
			c.resolvePaths()
			err := c.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("%v is not ErrConfig", err)
			}
			if !regexp.MustCompile(`(^|\n)` + regexp.QuoteMeta(tc.key) + `: `).MatchString(err.Error()) {
				t.Errorf("error %q does not start a line with key %q", err, tc.key)
			}
		})
	}
	ok := defaultConfig()
	ok.ServerName = "example.org"
	ok.resolvePaths()
	if err := ok.Validate(); err != nil {
		t.Errorf("production defaults with a server name do not validate: %v", err)
	}
}

func TestFlagAndEnvValueErrors(t *testing.T) {
	_, err := loadFor(t, []string{"--dev", "--media-port", "lots"}, map[string]string{"SWITCHBOARD_TURN_USER_QUOTA": "x"})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"sfu.udp_listen", "--media-port", "turn.user_quota", "SWITCHBOARD_TURN_USER_QUOTA"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestServeWithoutConfigTellsToGenerate(t *testing.T) {
	var stdout, stderr bytes.Buffer
	a := &app{stdout: &stdout, stderr: &stderr, getenv: envMap(nil)}
	err := a.run(context.Background(), []string{"serve"})
	if !errors.Is(err, ErrNoConfig) {
		t.Fatalf("got %v, want ErrNoConfig", err)
	}
	if !strings.Contains(err.Error(), "switchboard generate-config --server-name") {
		t.Errorf("message %q does not say how to generate a config", err)
	}
}

func TestServeValidatesBeforeOpeningAnything(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var stdout, stderr bytes.Buffer
	a := &app{stdout: &stdout, stderr: &stderr, getenv: envMap(nil)}
	err := a.run(context.Background(), []string{"serve", "--dev", "--data-dir", dir, "--registration", "sometimes", "--client-listen", "127.0.0.1:0"})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "registration.mode") {
		t.Fatalf("got %v, want a registration.mode error", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir was created before validation finished: %v", err)
	}
}

func TestGenerateConfigParsesBack(t *testing.T) {
	gen := func() string {
		var stdout, stderr bytes.Buffer
		a := &app{stdout: &stdout, stderr: &stderr, getenv: envMap(nil)}
		err := a.run(context.Background(), []string{"generate-config", "--server-name", "example.org", "--public-base-url", "https://matrix.example.org"})
		if err != nil {
			t.Fatalf("generate-config: %v (%s)", err, stderr.String())
		}
		return stdout.String()
	}
	out := gen()
	path := writeFile(t, t.TempDir(), "switchboard.yaml", out)
	cfg, err := loadFor(t, []string{"--config", path}, nil)
	if err != nil {
		t.Fatalf("generated config does not load: %v\n%s", err, out)
	}
	if cfg.ServerName != "example.org" || cfg.PublicBaseURL != "https://matrix.example.org" {
		t.Errorf("server name/base URL: %q %q", cfg.ServerName, cfg.PublicBaseURL)
	}
	if cfg.Registration.Mode != "closed" {
		t.Errorf("registration %q, want closed", cfg.Registration.Mode)
	}
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	if !hex64.MatchString(cfg.Registration.SharedSecret) || !hex64.MatchString(cfg.TURN.SharedSecret) {
		t.Errorf("secrets not generated: %q %q", cfg.Registration.SharedSecret, cfg.TURN.SharedSecret)
	}
	if cfg.Registration.SharedSecret == cfg.TURN.SharedSecret {
		t.Error("the two secrets are equal")
	}
	if cfg.DataDir != "/var/lib/switchboard" || cfg.Database != "sqlite:/var/lib/switchboard/switchboard.db" {
		t.Errorf("data dir %q database %q", cfg.DataDir, cfg.Database)
	}
	// The file must name every key of Config, so it documents all of them.
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	for _, key := range allYAMLKeys(reflect.TypeFor[Config](), "") {
		if !nodeHasKey(doc.Content[0], strings.Split(key, ".")) {
			t.Errorf("generated config lacks key %s", key)
		}
	}
	if other := gen(); other == out {
		t.Error("two runs generated the same secrets")
	}
}

func TestGenerateConfigRefusesBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"generate-config"},
		{"generate-config", "--server-name", "bad name"},
		{"generate-config", "--server-name", "example.org", "--public-base-url", "ftp://x"},
	} {
		var stdout, stderr bytes.Buffer
		a := &app{stdout: &stdout, stderr: &stderr, getenv: envMap(nil)}
		if err := a.run(context.Background(), args); err == nil {
			t.Errorf("%q accepted", args)
		}
		if stdout.Len() != 0 {
			t.Errorf("%q wrote a config despite the error", args)
		}
	}
}

func TestGenerateConfigOutputFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.yaml")
	var stdout, stderr bytes.Buffer
	a := &app{stdout: &stdout, stderr: &stderr, getenv: envMap(nil)}
	if err := a.run(context.Background(), []string{"generate-config", "--server-name", "example.org", "--output", path}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 (the file holds secrets)", st.Mode().Perm())
	}
	if err := a.run(context.Background(), []string{"generate-config", "--server-name", "example.org", "--output", path}); err == nil {
		t.Error("overwrote an existing config")
	}
}

// allYAMLKeys lists the dotted keys of a struct type, down to leaves.
func allYAMLKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		k := joinKey(prefix, tagName(f))
		if f.Type.Kind() == reflect.Struct {
			out = append(out, allYAMLKeys(f.Type, k)...)
			continue
		}
		out = append(out, k)
	}
	return out
}

func nodeHasKey(n *yaml.Node, path []string) bool {
	if n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == path[0] {
			return len(path) == 1 || nodeHasKey(n.Content[i+1], path[1:])
		}
	}
	return false
}

func TestServerName(t *testing.T) {
	good := map[string]struct {
		host string
		port int
	}{
		"example.org":       {"example.org", 0},
		"example.org:8448":  {"example.org", 8448},
		"1.2.3.4":           {"1.2.3.4", 0},
		"[::1]:8448":        {"[::1]", 8448},
		"[2001:db8::1]":     {"[2001:db8::1]", 0},
		"localhost":         {"localhost", 0},
		"matrix-1.EXAMPLE9": {"matrix-1.EXAMPLE9", 0},
	}
	for in, want := range good {
		h, p, err := splitServerName(in)
		if err != nil || h != want.host || p != want.port {
			t.Errorf("%q: got %q %d %v, want %q %d", in, h, p, err, want.host, want.port)
		}
	}
	for _, in := range []string{"", "exa mple.org", "example.org:", "example.org:0", "example.org:65536", "example.org:80a", "[::1", "[nope]", "[::1]x", "a_b.org", ":8448", "@x", strings.Repeat("a", 300)} {
		if _, _, err := splitServerName(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestExposedListeners(t *testing.T) {
	c := devConfig()
	if got := exposedListeners(&c); len(got) != 0 {
		t.Errorf("dev defaults expose %v", got)
	}
	c.Client.Listen = ":8008"
	c.Metrics.Listen = "0.0.0.0:9090"
	c.Federation.Listen = ""
	if got := exposedListeners(&c); !reflect.DeepEqual(got, []string{"client.listen", "metrics.listen"}) {
		t.Errorf("got %v", got)
	}
}

// TestRedisNeedsPostgres: several nodes refuse SQLite with an error that
// names the fix, and run on PostgreSQL.
func TestRedisNeedsPostgres(t *testing.T) {
	c := defaultConfig()
	c.ServerName = "example.org"
	c.Redis = "redis://127.0.0.1:6379/0"
	c.resolvePaths()
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL") || !strings.Contains(err.Error(), "--database") || !strings.Contains(err.Error(), "postgres://") {
		t.Fatalf("redis on SQLite: %v", err)
	}
	c.Database = "postgres://u:p@127.0.0.1/db"
	c.NodeID = "node-a.1"
	if err := c.Validate(); err != nil {
		t.Fatalf("redis on PostgreSQL: %v", err)
	}
}
