package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestRegisterMACVector(t *testing.T) {
	// Computed independently with Python's hmac module:
	// hmac.new(b"s3cret", b"abc\0alice\0pw\0admin", hashlib.sha1).hexdigest()
	if got := registerMAC("s3cret", "abc", "alice", "pw", true); got != "fff9f57189c2d1a494c19759e16d592b0f64ce32" {
		t.Errorf("admin mac %s", got)
	}
	if got := registerMAC("s3cret", "abc", "alice", "pw", false); got != "d7cd8fe38bb2b37bacf757920ef46050075d427d" {
		t.Errorf("notadmin mac %s", got)
	}
}

// adminAPI is a loopback stand-in for the homeserver's shared-secret
// registration endpoint, checking requests the way Synapse documents them.
type adminAPI struct {
	secret string
	mu     sync.Mutex
	nonces map[string]bool // guarded by mu
	users  map[string]bool // guarded by mu; value: admin
	n      int             // guarded by mu
}

func (s *adminAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != registerPath {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		s.n++
		nonce := "nonce-" + strings.Repeat("x", s.n)
		s.nonces[nonce] = true
		writeJSON(w, 200, map[string]string{"nonce": nonce})
	case http.MethodPost:
		var body struct {
			Nonce, Username, Password, Mac string
			Admin                          bool
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeJSON(w, 400, map[string]string{"errcode": "M_NOT_JSON", "error": err.Error()})
			return
		}
		if !s.nonces[body.Nonce] {
			writeJSON(w, 400, map[string]string{"errcode": "M_UNKNOWN", "error": "unrecognised nonce"})
			return
		}
		delete(s.nonces, body.Nonce)
		m := hmac.New(sha1.New, []byte(s.secret))
		kind := "notadmin"
		if body.Admin {
			kind = "admin"
		}
		m.Write([]byte(body.Nonce + "\x00" + body.Username + "\x00" + body.Password + "\x00" + kind))
		if !hmac.Equal([]byte(hex.EncodeToString(m.Sum(nil))), []byte(body.Mac)) {
			writeJSON(w, 403, map[string]string{"errcode": "M_FORBIDDEN", "error": "HMAC incorrect"})
			return
		}
		s.users[body.Username] = body.Admin
		writeJSON(w, 200, map[string]string{"user_id": "@" + body.Username + ":test", "access_token": "t", "device_id": "D", "home_server": "test"})
	}
}

func newAdminAPI(t *testing.T, secret string) (*adminAPI, *httptest.Server) {
	api := &adminAPI{secret: secret, nonces: map[string]bool{}, users: map[string]bool{}}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return api, srv
}

func TestRegisterCommand(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	api, srv := newAdminAPI(t, secret)
	dir := t.TempDir()
	pwFile := writeFile(t, dir, "pw", "correct horse\nignored second line\n")

	run := func(env map[string]string, stdin string, args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		a := &app{stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr, getenv: envMap(env)}
		err := a.run(context.Background(), append([]string{"register"}, args...))
		return stdout.String(), err
	}

	out, err := run(nil, "", "--url", srv.URL, "--shared-secret", secret, "--user", "alice", "--password-file", pwFile, "--admin")
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if !strings.Contains(out, "@alice:test") {
		t.Errorf("output %q", out)
	}

	// Secret from the environment, password from standard input.
	if _, err := run(map[string]string{"SWITCHBOARD_REGISTRATION_SHARED_SECRET": secret}, "pw-from-stdin\n", "--url", srv.URL, "--user", "@bob:test"); err != nil {
		t.Fatalf("register bob: %v", err)
	}

	// Secret and URL from a config file.
	cfgPath := writeFile(t, dir, "s.yaml", "server_name: test\nregistration:\n  shared_secret: \""+secret+"\"\nclient:\n  listen: \""+strings.TrimPrefix(srv.URL, "http://")+"\"\n")
	if _, err := run(nil, "", "--config", cfgPath, "--user", "carol", "--password", "pw"); err != nil {
		t.Fatalf("register carol: %v", err)
	}

	// Secret from a --dev data directory.
	if err := os.WriteFile(filepath.Join(dir, registrationSecretName), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(nil, "", "--data-dir", dir, "--url", srv.URL+"/", "--user", "dave", "--password", "pw"); err != nil {
		t.Fatalf("register dave: %v", err)
	}

	api.mu.Lock()
	want := map[string]bool{"alice": true, "bob": false, "carol": false, "dave": false}
	for u, admin := range want {
		if got, ok := api.users[u]; !ok || got != admin {
			t.Errorf("user %s: registered %v admin %v, want admin %v", u, ok, got, admin)
		}
	}
	api.mu.Unlock()

	// A wrong secret is refused by the server, and the error says why.
	_, err = run(nil, "", "--url", srv.URL, "--shared-secret", "wrong-secret-wrong-secret", "--user", "eve", "--password", "pw")
	if !errors.Is(err, ErrRegister) || !strings.Contains(err.Error(), "M_FORBIDDEN") {
		t.Errorf("wrong secret: got %v", err)
	}
}

func TestRegisterUsageErrors(t *testing.T) {
	_, srv := newAdminAPI(t, "0123456789abcdef")
	for name, args := range map[string][]string{
		"no user":     {"--url", srv.URL, "--shared-secret", "0123456789abcdef", "--password", "x"},
		"bad user":    {"--url", srv.URL, "--shared-secret", "0123456789abcdef", "--user", "Alice!", "--password", "x"},
		"no secret":   {"--url", srv.URL, "--user", "alice", "--password", "x"},
		"no password": {"--url", srv.URL, "--shared-secret", "0123456789abcdef", "--user", "alice"},
	} {
		var stdout, stderr bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: envMap(nil)}
		err := a.run(context.Background(), append([]string{"register"}, args...))
		if !errors.Is(err, ErrUsage) {
			t.Errorf("%s: got %v, want ErrUsage", name, err)
		}
	}
	// Nobody listening: the error says so.
	ln := httptest.NewServer(http.NotFoundHandler())
	url := ln.URL
	ln.Close()
	var stdout, stderr bytes.Buffer
	a := &app{stdout: &stdout, stderr: &stderr, getenv: envMap(nil)}
	err := a.run(context.Background(), []string{"register", "--url", url, "--shared-secret", "0123456789abcdef", "--user", "a", "--password", "p"})
	if !errors.Is(err, ErrRegister) || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("closed port: got %v", err)
	}
}

// TestRegisterFindsListenerAsServeDoes: a server started with
// `serve --config x.yaml --client-listen ...` (or SWITCHBOARD_CLIENT_LISTEN)
// listens elsewhere than the file says; register given the same file and the
// same override reaches it without --url.
func TestRegisterFindsListenerAsServeDoes(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	api, srv := newAdminAPI(t, secret)
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	// The file names a port nobody listens on.
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := strings.TrimPrefix(closed.URL, "http://")
	closed.Close()
	dir := t.TempDir()
	cfgPath := writeFile(t, dir, "x.yaml", "server_name: test\nregistration:\n  shared_secret: \""+secret+"\"\nclient:\n  listen: \""+closedAddr+"\"\n")

	run := func(env map[string]string, args ...string) error {
		var stdout, stderr bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: envMap(env)}
		return a.run(context.Background(), append([]string{"register", "--config", cfgPath, "--password", "pw"}, args...))
	}
	if err := run(nil, "--user", "nobody"); !errors.Is(err, ErrRegister) || !strings.Contains(err.Error(), closedAddr) {
		t.Fatalf("the file's listener (closed): got %v, want a cannot-reach error naming %s", err, closedAddr)
	}
	if err := run(nil, "--client-listen", hostPort, "--user", "flag"); err != nil {
		t.Fatalf("--client-listen: %v", err)
	}
	if err := run(map[string]string{"SWITCHBOARD_CLIENT_LISTEN": hostPort}, "--user", "env"); err != nil {
		t.Fatalf("SWITCHBOARD_CLIENT_LISTEN: %v", err)
	}
	// A flag beats the environment, as for serve.
	if err := run(map[string]string{"SWITCHBOARD_CLIENT_LISTEN": closedAddr}, "--client-listen", hostPort, "--user", "both"); err != nil {
		t.Fatalf("flag over environment: %v", err)
	}
	// A bad override is named, as serve names it.
	if err := run(nil, "--media-port", "x", "--user", "bad"); err == nil || !strings.Contains(err.Error(), "--media-port") {
		t.Errorf("bad flag value: got %v", err)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	for _, u := range []string{"flag", "env", "both"} {
		if _, ok := api.users[u]; !ok {
			t.Errorf("user %s not registered", u)
		}
	}
}
