package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHealthCommand: `switchboard health` finds the running server's client
// listener as serve does and exits 0 on /health and /ready; a server that
// is not there, or not ready, is an error (exit 1).
func TestHealthCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	r := startServe(t, append([]string{"--dev", "--data-dir", dir}, freePortArgs()...)...)
	defer func() {
		if err := r.stop(t); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	run := func(env map[string]string, args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		a := &app{stdout: &stdout, stderr: &stderr, getenv: envMap(env)}
		err := a.run(context.Background(), append([]string{"health"}, args...))
		return stdout.String(), err
	}
	if out, err := run(nil, "--client-listen", r.addrs.Client); err != nil || !strings.Contains(out, `"status":"ok"`) {
		t.Errorf("health --client-listen: %q, %v", out, err)
	}
	if out, err := run(map[string]string{"SWITCHBOARD_CLIENT_LISTEN": r.addrs.Client}, "--ready"); err != nil || !strings.Contains(out, `"status":"ready"`) {
		t.Errorf("health --ready with SWITCHBOARD_CLIENT_LISTEN: %q, %v", out, err)
	}
	cfgPath := writeFile(t, t.TempDir(), "s.yaml", "server_name: test\nclient:\n  listen: \""+r.addrs.Client+"\"\n")
	if _, err := run(map[string]string{"SWITCHBOARD_CONFIG": cfgPath}); err != nil {
		t.Errorf("health with SWITCHBOARD_CONFIG: %v", err)
	}

	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	if _, err := run(nil, "--url", closedURL); !errors.Is(err, ErrUnhealthy) || exitCode(err, &bytes.Buffer{}) != 1 {
		t.Errorf("nothing listening: got %v, want ErrUnhealthy (exit 1)", err)
	}
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusServiceUnavailable, readyBody{Status: "unavailable", Reason: "database: connection refused"})
	}))
	defer notReady.Close()
	if _, err := run(nil, "--ready", "--url", notReady.URL); !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), "database: connection refused") {
		t.Errorf("not ready: got %v, want ErrUnhealthy with the reason", err)
	}
}

// TestTURNRelayPortsFlag: --turn-relay-ports (and its environment
// variable) bound the ports of TURN relay sockets, so that a firewall or a
// container can publish exactly that range.
func TestTURNRelayPortsFlag(t *testing.T) {
	for _, tc := range []struct {
		v      string
		lo, hi int
		ok     bool
	}{
		{"49152-65535", 49152, 65535, true},
		{" 50000 - 50010 ", 50000, 50010, true},
		{"50000", 50000, 50000, true},
		{"50010-50000", 0, 0, false},
		{"0-10", 0, 0, false},
		{"1-65536", 0, 0, false},
		{"a-b", 0, 0, false},
	} {
		sf, _, err := parseServeFlags([]string{"--dev", "--turn-relay-ports", tc.v}, envMap(nil), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := buildConfig(sf, envMap(nil))
		if tc.ok != (err == nil) || (tc.ok && (cfg.TURN.RelayPortMin != tc.lo || cfg.TURN.RelayPortMax != tc.hi)) {
			t.Errorf("--turn-relay-ports %q: %d-%d, %v", tc.v, cfg.TURN.RelayPortMin, cfg.TURN.RelayPortMax, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "--turn-relay-ports")) {
			t.Errorf("--turn-relay-ports %q: error %v does not name the flag", tc.v, err)
		}
	}

	// A real relay on a free range of three ports allocates inside it.
	lo := freeUDPRange(t, 3)
	rng := fmt.Sprintf("%d-%d", lo, lo+2)
	dir := filepath.Join(t.TempDir(), "data")
	r := startServe(t, append(append([]string{"--dev", "--data-dir", dir}, freePortArgs()...), "--turn-relay-ports", rng)...)
	defer func() {
		if err := r.stop(t); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	secret, err := os.ReadFile(filepath.Join(dir, turnSecretName))
	if err != nil {
		t.Fatal(err)
	}
	user, pass := turnREST(strings.TrimSpace(string(secret)), "alice", time.Now().Add(time.Hour))
	relay := allocate(t, r.addrs.TURNUDP, user, pass)
	if relay == nil {
		t.Fatal("allocation refused")
	}
	if p := relay.(*net.UDPAddr).Port; p < lo || p > lo+2 {
		t.Errorf("relayed port %d outside --turn-relay-ports %s", p, rng)
	}
}

// freeUDPRange finds n consecutive UDP ports on 127.0.0.1 that are free
// now, in the dynamic range.
func freeUDPRange(t *testing.T, n int) int {
	t.Helper()
	for start := 50000; start+n < 65000; start += 97 {
		var held []net.PacketConn
		ok := true
		for p := start; p < start+n; p++ {
			c, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			held = append(held, c)
		}
		for _, c := range held {
			c.Close()
		}
		if ok {
			return start
		}
	}
	t.Fatal("no free UDP port range")
	return 0
}
