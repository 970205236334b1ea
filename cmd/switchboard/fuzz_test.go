package main

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzParseSigningKey: any input either fails with ErrKeyFile or yields a
// key that survives a format/parse round trip.
func FuzzParseSigningKey(f *testing.F) {
	f.Add([]byte("ed25519 a_zero " + strings.Repeat("A", 43) + "\n"))
	f.Add([]byte("# c\n\ned25519 a_x " + strings.Repeat("B", 43) + "=\n"))
	f.Add([]byte("ed25519 a_x AAAA"))
	f.Add([]byte("rsa 1 2"))
	f.Add([]byte("\x00\xff\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parseSigningKey(data)
		if err != nil {
			return
		}
		back, err := parseSigningKey(formatSigningKey(k))
		if err != nil || back.ID() != k.ID() || !back.Key.Equal(k.Key) {
			t.Fatalf("round trip of %q failed: %v", data, err)
		}
	})
}

// FuzzDecodeConfig: strict decoding never panics, leaves the config alone
// on error, and whatever it accepts can be validated.
func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte("server_name: example.org\nturn:\n  listen: \":3478\"\n"))
	f.Add([]byte("a: &x {b: *x}\n"))
	f.Add([]byte("turn: {allow_cidrs: [1, [2]], static_users: {a: b}}\n"))
	f.Add([]byte("limits:\n  rate_limit:\n    send_per_second: 1e400\n"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("shutdown_timeout: 5m\nlog: {level: debug}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := defaultConfig()
		before := defaultConfig()
		if err := decodeConfig(data, &cfg); err != nil {
			if !reflect.DeepEqual(cfg, before) {
				t.Fatalf("config changed on error %v", err)
			}
			return
		}
		cfg.resolvePaths()
		_ = cfg.Validate()
	})
}

// FuzzServerName: accepted names have a non-empty host that starts the
// input and a port in range.
func FuzzServerName(f *testing.F) {
	for _, s := range []string{"example.org", "example.org:8448", "[::1]:8448", "1.2.3.4", "[", "a:b:c", ":1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, port, err := splitServerName(s)
		if err != nil {
			return
		}
		if host == "" || !strings.HasPrefix(s, host) || port < 0 || port > 65535 {
			t.Fatalf("%q: host %q port %d", s, host, port)
		}
	})
}

// FuzzRegisterLocalpart: accepted localparts use only the allowed
// characters.
func FuzzRegisterLocalpart(f *testing.F) {
	for _, s := range []string{"alice", "@bob:example.org", "Alice", "a b", "@:x", "x/y=z+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lp, err := registerLocalpart(s)
		if err != nil {
			return
		}
		if lp == "" || strings.Trim(lp, "abcdefghijklmnopqrstuvwxyz0123456789._=-/+") != "" {
			t.Fatalf("%q accepted as %q", s, lp)
		}
	})
}
