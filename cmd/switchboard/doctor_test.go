package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freeTCPAddr is 127.0.0.1 with a port that was free a moment ago.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// freeUDPTCPAddr is 127.0.0.1 with a port free for both UDP and TCP a
// moment ago.
func freeUDPTCPAddr(t *testing.T) string {
	t.Helper()
	for range 50 {
		addr := freeTCPAddr(t)
		if pc, err := net.ListenPacket("udp", addr); err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return ""
}

// doctorFor runs doctor in-process with env and args and returns its
// output and error.
func doctorFor(env *doctorEnv, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	a := &app{stdout: &stdout, stderr: &stderr, getenv: envMap(nil), doctorEnv: env}
	err := a.run(context.Background(), append([]string{"doctor"}, args...))
	return stdout.String() + stderr.String(), err
}

// boundArgs are serve's flags that name where r really listens.
func boundArgs(r *running) []string {
	a := r.addrs
	return []string{
		"--client-listen", a.Client, "--federation-listen", a.Federation, "--metrics-listen", a.Metrics,
		"--turn-listen", a.TURNUDP, "--turn-tls-listen", a.TURNTLS,
		"--media-udp-listen", a.MediaUDP, "--media-tcp-listen", a.MediaTCP,
	}
}

// startDoctorDev starts a --dev server whose server name carries its
// federation port (so that resolution reaches it) and returns it with the
// doctor flags that describe it.
func startDoctorDev(t *testing.T, extra ...string) (*running, []string) {
	t.Helper()
	fed := freeTCPAddr(t)
	name := "localhost:" + portOf(fed)
	dir := filepath.Join(t.TempDir(), "data")
	args := append([]string{"--dev", "--data-dir", dir, "--server-name", name}, freePortArgs()...)
	// TURN on one port for UDP and TCP, as in production.
	args = append(append(args, "--federation-listen", fed, "--turn-listen", freeUDPTCPAddr(t)), extra...)
	r := startServe(t, args...)
	t.Cleanup(func() {
		if err := r.stop(t); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return r, append([]string{"--dev", "--data-dir", dir, "--server-name", name, "--clock-peer", ""}, boundArgs(r)...)
}

// TestDoctor runs `switchboard doctor` against a healthy --dev server (every
// check ok, exit 0) and against broken setups: each problem is named on a
// PROBLEM line and the run fails.
func TestDoctor(t *testing.T) {
	_, args := startDoctorDev(t)
	out, err := doctorFor(nil, args...)
	if err != nil {
		t.Fatalf("healthy server: %v\n%s", err, out)
	}
	for _, check := range []string{"config", "public_ip", "client.listen", "metrics.listen", "federation.listen",
		"turn.listen (udp)", "turn.listen (tcp)", "turn.tls_listen", "sfu.udp_listen", "sfu.tcp_listen",
		"turn relay", "federation name", "federation cert", "federation keys", "well-known client", "database"} {
		if !strings.Contains(out, "ok       "+check) {
			t.Errorf("healthy server: no ok line for %s:\n%s", check, out)
		}
	}
	if strings.Contains(out, "PROBLEM") || !strings.Contains(out, "No problems found.") {
		t.Errorf("healthy server:\n%s", out)
	}

	closed := freeTCPAddr(t)
	for _, tc := range []struct {
		name  string
		extra []string
		want  []string
	}{
		{"wrong public IP", []string{"--public-ip", "192.0.2.1"},
			[]string{"PROBLEM  public_ip", "192.0.2.1 is not an address of this machine", "PROBLEM  turn relay"}},
		{"closed ICE-TCP port", []string{"--media-tcp-listen", closed},
			[]string{"PROBLEM  sfu.tcp_listen", "ICE-TCP " + closed}},
		{"closed TURN TLS port", []string{"--turn-tls-listen", closed},
			[]string{"PROBLEM  turn.tls_listen", closed}},
		{"wrong TURN secret", []string{"--turn-shared-secret", "not-the-secret-the-server-uses"},
			[]string{"PROBLEM  turn relay", "refused"}},
		{"wrong server name", []string{"--server-name", "localhost:" + portOf(closed)},
			[]string{"PROBLEM  federation cert", "cannot reach localhost:" + portOf(closed)}},
		{"no database", []string{"--database", "sqlite:" + filepath.Join(t.TempDir(), "none.db")},
			[]string{"PROBLEM  database", "no SQLite database"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := doctorFor(nil, append(append([]string{}, args...), tc.extra...)...)
			if !errors.Is(err, ErrDoctor) || exitCode(err, &bytes.Buffer{}) != 1 {
				t.Errorf("got %v, want ErrDoctor (exit 1)", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if !strings.Contains(out, "fix: ") {
				t.Errorf("no fix given:\n%s", out)
			}
		})
	}
}

// TestDoctorExpiredCertificate: a federation certificate past its date is
// named, with the date.
func TestDoctorExpiredCertificate(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM, err := selfSignedCert([]string{"localhost"}, time.Now().Add(-4*365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert := writeFile(t, dir, "old.crt", string(certPEM))
	key := writeFile(t, dir, "old.key", string(keyPEM))
	_, args := startDoctorDev(t, "--federation-tls-cert", cert, "--federation-tls-key", key)
	out, err := doctorFor(nil, append(args, "--federation-tls-cert", cert, "--federation-tls-key", key)...)
	if !errors.Is(err, ErrDoctor) {
		t.Errorf("got %v, want ErrDoctor", err)
	}
	want := "PROBLEM  federation cert      the certificate on localhost:"
	if !strings.Contains(out, want) || !strings.Contains(out, "expired on "+time.Now().Add(-365*24*time.Hour).UTC().Format("2006")) {
		t.Errorf("output does not name the expired certificate:\n%s", out)
	}
}

// TestDoctorClockSkew compares the clock with a peer whose Date header is
// ten minutes ahead (a problem) and one that agrees (ok).
func TestDoctorClockSkew(t *testing.T) {
	var ahead time.Duration
	peer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_matrix/federation/v1/version" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Date", time.Now().Add(ahead).UTC().Format(http.TimeFormat))
		_, _ = w.Write([]byte(`{"server":{"name":"peer"}}`))
	}))
	defer peer.Close()
	roots := x509.NewCertPool()
	roots.AddCert(peer.Certificate())
	env := &doctorEnv{roots: roots}
	// Only the config and the clock matter here: every listener is off.
	base := []string{"--server-name", "doctor.test", "--data-dir", t.TempDir(), "--federation-listen", "", "--metrics-listen", "",
		"--turn=false", "--sfu=false", "--client-listen", freeTCPAddr(t), "--clock-peer", strings.TrimPrefix(peer.URL, "https://")}
	ahead = 10 * time.Minute
	out, _ := doctorFor(env, base...)
	if !strings.Contains(out, "PROBLEM  clock") || !strings.Contains(out, "away from 127.0.0.1:") {
		t.Errorf("ten minutes ahead:\n%s", out)
	}
	ahead = 0
	out, _ = doctorFor(env, base...)
	if !strings.Contains(out, "ok       clock") {
		t.Errorf("same time:\n%s", out)
	}
}

// TestDoctorResolveServerName follows the spec's resolution order with a
// well-known server on loopback and a fake SRV table.
func TestDoctorResolveServerName(t *testing.T) {
	var delegate string
	wk := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/matrix/server" || delegate == "" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"m.server":"` + delegate + `"}`))
	}))
	// A certificate for localhost, which the well-known fetch verifies.
	certPEM, keyPEM, err := selfSignedCert([]string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	wk.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	wk.StartTLS()
	defer wk.Close()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(certPEM) {
		t.Fatal("bad test certificate")
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(wk.URL, "https://"))
	srv := map[string]*net.SRV{"_matrix-fed._tcp.srv.test": {Target: "fed.srv.test.", Port: 8450}}
	d := &doctorRun{env: (&doctorEnv{roots: roots, httpsPort: atoi(t, port), timeout: 5 * time.Second,
		lookupSRV: func(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
			if r, ok := srv["_"+service+"._"+proto+"."+name]; ok {
				return "", []*net.SRV{r}, nil
			}
			return "", nil, errors.New("no such host")
		}}).withDefaults()}
	for _, tc := range []struct {
		name, delegate, addr, certHost string
	}{
		{"1.2.3.4", "", "1.2.3.4:8448", ""},
		{"example.test:1234", "", "example.test:1234", "example.test"},
		// No well-known (the name does not resolve), no SRV: 8448.
		{"nowhere.test", "", "nowhere.test:8448", "nowhere.test"},
		{"srv.test", "", "fed.srv.test:8450", "srv.test"},
	} {
		delegate = tc.delegate
		got, err := d.resolveServerName(context.Background(), tc.name)
		if err != nil || got.addr != tc.addr || got.certHost != tc.certHost {
			t.Errorf("%s: %+v, %v; want %s for %s", tc.name, got, err, tc.addr, tc.certHost)
		}
	}
	// Delegation through https://localhost/.well-known/matrix/server: a
	// delegated name with a port is used as it is; without one, its SRV
	// record; else 8448.
	delegate = "matrix.delegated.test:443"
	got, err := d.resolveServerName(context.Background(), "localhost")
	if err != nil || got.addr != "matrix.delegated.test:443" || got.certHost != "matrix.delegated.test" || !strings.Contains(got.how, "delegates to matrix.delegated.test:443") {
		t.Errorf("delegated: %+v, %v", got, err)
	}
	delegate = "srv.test"
	if got, err := d.resolveServerName(context.Background(), "localhost"); err != nil || got.addr != "fed.srv.test:8450" || got.certHost != "srv.test" {
		t.Errorf("delegated to a name with SRV: %+v, %v", got, err)
	}
	delegate = "plain.test"
	if got, err := d.resolveServerName(context.Background(), "localhost"); err != nil || got.addr != "plain.test:8448" || got.certHost != "plain.test" {
		t.Errorf("delegated to a name without SRV: %+v, %v", got, err)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("bad port %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// TestDoctorCertificateTrust: outside --dev, a certificate that no trusted
// authority signed is a problem; the same certificate among the roots is ok.
func TestDoctorCertificateTrust(t *testing.T) {
	_, args := startDoctorDev(t)
	prod := args[1:] // without --dev: production defaults, the same listeners
	out, _ := doctorFor(nil, prod...)
	if !strings.Contains(out, "PROBLEM  federation cert      other servers will not trust the certificate") {
		t.Errorf("untrusted certificate not named:\n%s", out)
	}
	dir := prod[1] // --data-dir's value
	pem, err := os.ReadFile(filepath.Join(dir, tlsCertName))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	out, _ = doctorFor(&doctorEnv{roots: roots}, prod...)
	if !strings.Contains(out, "ok       federation cert      valid for localhost until") || !strings.Contains(out, "ok       federation keys") {
		t.Errorf("trusted certificate:\n%s", out)
	}
}
