package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePortArgs puts every listener of serve on 127.0.0.1 port 0.
func freePortArgs() []string {
	return []string{
		"--client-listen", "127.0.0.1:0",
		"--federation-listen", "127.0.0.1:0",
		"--metrics-listen", "127.0.0.1:0",
		"--turn-listen", "127.0.0.1:0",
		"--turn-tls-listen", "127.0.0.1:0",
		"--media-udp-listen", "127.0.0.1:0",
		"--media-tcp-listen", "127.0.0.1:0",
	}
}

// running is a serve command running in-process.
type running struct {
	addrs  boundAddrs
	stdout *syncBuffer
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// startServe runs `switchboard serve args...` in-process and waits until
// every listener serves.
func startServe(t *testing.T, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan boundAddrs, 1)
	a := &app{stdout: r.stdout, stderr: r.stderr, getenv: envMap(nil), onServing: func(b boundAddrs) { ready <- b }}
	go func() { r.done <- a.run(ctx, append([]string{"serve"}, args...)) }()
	select {
	case r.addrs = <-ready:
	case err := <-r.done:
		cancel()
		t.Fatalf("serve exited before serving: %v\nstderr:\n%s", err, r.stderr.String())
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("serve did not start within 60 s\nstderr:\n%s", r.stderr.String())
	}
	return r
}

// stop cancels serve's context (as SIGTERM does) and waits for it to
// return.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop within 30 s\nstderr:\n%s", r.stderr.String())
		return nil
	}
}

func getJSON(t *testing.T, c *http.Client, url string, wantCode int) map[string]any {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantCode {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, body, wantCode)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("GET %s: not JSON: %q", url, body)
	}
	return m
}

func TestServeDev(t *testing.T) {
	for _, b := range storagetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			args := append([]string{"--dev", "--data-dir", dir}, freePortArgs()...)
			if b.Name != "sqlite" {
				args = append(args, "--database", b.Open(t))
			}
			// After b.Open: its admin connection lives until cleanup.
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			r := startServe(t, args...)
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 15 * time.Second}

			for _, base := range []string{"http://" + r.addrs.Client, "http://" + r.addrs.Metrics} {
				if got := getJSON(t, c, base+"/health", 200); got["status"] != "ok" {
					t.Errorf("%s/health: %v", base, got)
				}
				got := getJSON(t, c, base+"/ready", 200)
				checks, _ := got["checks"].(map[string]any)
				if got["status"] != "ready" || checks["database"] != "ok" || checks["turn"] != "ok" {
					t.Errorf("%s/ready: %v", base, got)
				}
			}
			resp, err := c.Get("http://" + r.addrs.Metrics + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			metrics, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, want := range []string{"switchboard_build_info", "go_goroutines", "process_start_time_seconds", "switchboard_turn_", "switchboard_sfu_"} {
				if !bytes.Contains(metrics, []byte(want)) {
					t.Errorf("/metrics lacks %s", want)
				}
			}

			// Federation speaks TLS with the generated certificate.
			pem, err := os.ReadFile(filepath.Join(dir, tlsCertName))
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(pem)
			conn, err := tls.Dial("tcp", r.addrs.Federation, &tls.Config{RootCAs: roots, ServerName: "localhost"})
			if err != nil {
				t.Fatalf("federation TLS: %v", err)
			}
			conn.Close()

			if r.addrs.MediaUDP == "" || r.addrs.MediaTCP == "" {
				t.Errorf("SFU media sockets not bound: %+v", r.addrs)
			}
			out := r.stdout.String()
			for _, want := range []string{"DEVELOPMENT", "http://" + r.addrs.Client, "turn:127.0.0.1:" + portOf(r.addrs.TURNUDP) + "?transport=udp", "turn:127.0.0.1:" + portOf(r.addrs.TURNTCP) + "?transport=tcp", "udp " + r.addrs.MediaUDP, "/metrics"} {
				if !strings.Contains(out, want) {
					t.Errorf("banner lacks %q:\n%s", want, out)
				}
			}
			keyBefore, _ := os.ReadFile(filepath.Join(dir, signingKeyName))
			secretBefore, _ := os.ReadFile(filepath.Join(dir, turnSecretName))
			if len(keyBefore) == 0 || len(secretBefore) == 0 {
				t.Fatal("signing key or TURN secret not written to the data dir")
			}
			tr.CloseIdleConnections()
			if err := r.stop(t); err != nil {
				t.Fatalf("serve returned %v after a clean stop", err)
			}

			// A second start reuses the data directory's key and secret.
			r = startServe(t, args...)
			getJSON(t, c, "http://"+r.addrs.Client+"/ready", 200)
			tr.CloseIdleConnections()
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			keyAfter, _ := os.ReadFile(filepath.Join(dir, signingKeyName))
			secretAfter, _ := os.ReadFile(filepath.Join(dir, turnSecretName))
			if !bytes.Equal(keyBefore, keyAfter) || !bytes.Equal(secretBefore, secretAfter) {
				t.Error("restart replaced the signing key or TURN secret")
			}
		})
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func TestServePortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	args := append([]string{"serve", "--dev", "--data-dir", t.TempDir()}, freePortArgs()...)
	args = append(args, "--metrics-listen", busy.Addr().String())
	var stdout, stderr syncBuffer
	a := &app{stdout: &stdout, stderr: &stderr, getenv: envMap(nil)}
	err = a.run(context.Background(), args)
	if err == nil || !strings.Contains(err.Error(), "metrics.listen") {
		t.Fatalf("got %v, want an error naming metrics.listen", err)
	}
}

func TestReadyEndpoint(t *testing.T) {
	var fail atomic.Bool
	rd := &readiness{checks: []readyCheck{
		{name: "database", check: func(context.Context) error {
			if fail.Load() {
				return errors.New("connection refused")
			}
			return nil
		}},
		{name: "turn", check: func(context.Context) error { return nil }},
	}}
	mux := http.NewServeMux()
	rd.operatorRoutes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := srv.Client()

	if got := getJSON(t, c, srv.URL+"/ready", 200); got["status"] != "ready" {
		t.Errorf("healthy: %v", got)
	}
	fail.Store(true)
	got := getJSON(t, c, srv.URL+"/ready", 503)
	if got["reason"] != "database: connection refused" {
		t.Errorf("failing database: %v", got)
	}
	if checks, _ := got["checks"].(map[string]any); checks["turn"] != "ok" {
		t.Errorf("other checks not reported: %v", got)
	}
	getJSON(t, c, srv.URL+"/health", 200)
	fail.Store(false)
	rd.stopping.Store(true)
	if got := getJSON(t, c, srv.URL+"/ready", 503); got["reason"] != "shutting down" {
		t.Errorf("stopping: %v", got)
	}
	resp, err := c.Post(srv.URL+"/health", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /health: %d", resp.StatusCode)
	}
}
