package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"
)

// TestDevEndToEnd checks the wiring across components on a real --dev
// server: `switchboard register` against the homeserver's admin API, the
// well-known document, and TURN credentials from /voip/turnServer that the
// TURN relay accepts (both got the same generated secret).
func TestDevEndToEnd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	r := startServe(t, append([]string{"--dev", "--data-dir", dir}, freePortArgs()...)...)
	defer func() {
		if err := r.stop(t); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	base := "http://" + r.addrs.Client
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 15 * time.Second}

	// The register sub-command as the banner prints it, reading the secret
	// --dev generated.
	args := bannerCommand(t, r.stdout.String(), "Create an admin user:", "switchboard")
	if want := []string{"register", "--data-dir", dir, "--url", base, "--user", "alice", "--admin"}; !slices.Equal(args, want) {
		t.Errorf("banner's register command %q, want %q", args, want)
	}
	pw := writeFile(t, t.TempDir(), "pw", "correct horse battery\n")
	var out, errOut bytes.Buffer
	a := &app{stdout: &out, stderr: &errOut, getenv: envMap(nil)}
	if err := a.run(context.Background(), append(args, "--password-file", pw)); err != nil {
		t.Fatalf("register: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "@alice:localhost") {
		t.Errorf("register output %q", out.String())
	}

	wk := getJSON(t, c, base+"/.well-known/matrix/client", 200)
	if hs, _ := wk["m.homeserver"].(map[string]any); hs["base_url"] != base {
		t.Errorf("well-known: %v, want base_url %s", wk, base)
	}

	token := login(t, c, base, "alice", "correct horse battery")
	req, _ := http.NewRequest(http.MethodGet, base+"/_matrix/client/v3/voip/turnServer", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var creds struct {
		Username, Password string
		URIs               []string
		TTL                int
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &creds) != nil {
		t.Fatalf("turnServer: %d %s", resp.StatusCode, body)
	}
	wantURI := "turn:127.0.0.1:" + portOf(r.addrs.TURNUDP) + "?transport=udp"
	if !slices.Contains(creds.URIs, wantURI) || creds.TTL != 3600 {
		t.Errorf("turnServer: uris %v ttl %d, want %s and 3600", creds.URIs, creds.TTL, wantURI)
	}

	relay := allocate(t, r.addrs.TURNUDP, creds.Username, creds.Password)
	if relay == nil {
		t.Fatal("allocation with /voip/turnServer credentials failed")
	}
	if ip := relay.(*net.UDPAddr).IP; !ip.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("relayed address %v, want 127.0.0.1", relay)
	}
	if allocate(t, r.addrs.TURNUDP, creds.Username, creds.Password+"x") != nil {
		t.Error("allocation with a wrong password succeeded")
	}
}

func login(t *testing.T, c *http.Client, base, user, password string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": user},
		"password":   password,
	})
	resp, err := c.Post(base+"/_matrix/client/v3/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res struct {
		AccessToken string `json:"access_token"`
	}
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(data, &res) != nil || res.AccessToken == "" {
		t.Fatalf("login: %d %s", resp.StatusCode, data)
	}
	return res.AccessToken
}

// allocate asks the relay for a UDP allocation with a real pion TURN
// client and returns the relayed address, or nil when it is refused.
func allocate(t *testing.T, server, user, password string) net.Addr {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server,
		TURNServerAddr: server,
		Username:       user,
		Password:       password,
		Realm:          "localhost",
		Conn:           conn,
		RTO:            200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	relayConn, err := cl.AllocateWithContext(ctx)
	if err != nil {
		t.Logf("allocate: %v", err)
		return nil
	}
	defer relayConn.Close()
	return relayConn.LocalAddr()
}
