package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-chat/switchboard/homeserver"
)

// bannerCommand returns the arguments of the command the banner prints
// after label (the part after the binary's name).
func bannerCommand(t *testing.T, out, label, self string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, label); ok {
			rest = strings.TrimSpace(rest)
			args, ok := strings.CutPrefix(rest, self+" ")
			if !ok {
				t.Fatalf("%q does not start with %q", rest, self)
			}
			return strings.Fields(args)
		}
	}
	t.Fatalf("banner has no %q line:\n%s", label, out)
	return nil
}

// TestProductionBanner starts serve with a production configuration file
// (and a listen override given as a flag): it prints the URLs a person needs
// on standard output, not only JSON logs, and the admin command it prints
// works as printed.
func TestProductionBanner(t *testing.T) {
	dir := t.TempDir()
	const secret = "banner-test-registration-secret-0123456789"
	cfgPath := writeFile(t, dir, "switchboard.yaml", `server_name: banner.test
public_base_url: https://matrix.banner.test
public_ip: 127.0.0.1
data_dir: `+filepath.Join(dir, "data")+`
registration:
  mode: closed
  shared_secret: "`+secret+`"
client:
  listen: "127.0.0.1:1"
`)
	// The file's client port (1) is overridden by a flag, as a person would
	// when 8008 is taken; the banner must name the port really bound.
	r := startServe(t, append([]string{"--config", cfgPath}, freePortArgs()...)...)
	defer func() {
		if err := r.stop(t); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	out := r.stdout.String()
	local := "http://" + r.addrs.Client
	for _, want := range []string{
		"Switchboard is running (registration is closed).",
		"Server name:  banner.test",
		"https://matrix.banner.test (public_base_url), listening on " + local,
		"turn:127.0.0.1:" + portOf(r.addrs.TURNUDP) + "?transport=udp",
		"udp " + r.addrs.MediaUDP,
		"http://" + r.addrs.Metrics + "/metrics",
		local + "/health",
		"Federation:   listening on " + r.addrs.Federation,
		"Check the setup:       switchboard doctor --config " + cfgPath,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "DEVELOPMENT") {
		t.Errorf("production banner says DEVELOPMENT:\n%s", out)
	}

	// The printed command, run as printed (with a password), creates the
	// admin on this server.
	args := bannerCommand(t, out, "Create an admin user:", "switchboard")
	pw := writeFile(t, dir, "pw", "correct horse battery\n")
	var stdout, stderr bytes.Buffer
	a := &app{stdout: &stdout, stderr: &stderr, getenv: envMap(nil)}
	if err := a.run(context.Background(), append(args, "--password-file", pw)); err != nil {
		t.Fatalf("%q: %v\n%s", args, err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "@alice:banner.test (admin: true)") {
		t.Errorf("register printed %q", stdout.String())
	}
}

func TestInvokedAs(t *testing.T) {
	for arg0, want := range map[string]string{
		"":                                       "switchboard",
		"switchboard":                            "switchboard",
		"bin/switchboard":                        "bin/switchboard",
		"/usr/local/bin/switchboard":             "/usr/local/bin/switchboard",
		"/tmp/go-build1234/b001/exe/switchboard": "go run ./cmd/switchboard",
		"/root/.cache/go-build/3f/3f0a-d/switchboard": "go run ./cmd/switchboard",
	} {
		if got := invokedAs(arg0); got != want {
			t.Errorf("invokedAs(%q) = %q, want %q", arg0, got, want)
		}
	}
}

// TestDevBannerRegistrationMode: the banner says how registration really
// works; in token mode it does not claim registration is open (issue 20).
func TestDevBannerRegistrationMode(t *testing.T) {
	for mode, want := range map[string]string{
		homeserver.RegistrationOpen:   "registration is open",
		homeserver.RegistrationToken:  "registration needs a registration token",
		homeserver.RegistrationClosed: "registration is closed",
	} {
		var b strings.Builder
		cfg := devConfig()
		printBanner(&b, &cfg, boundAddrs{}, homeserver.Config{Registration: mode, PublicBaseURL: "http://127.0.0.1:8008"}, bannerInfo{dev: true})
		if !strings.Contains(b.String(), want) {
			t.Errorf("%s: banner lacks %q:\n%s", mode, want, b.String())
		}
		if mode != homeserver.RegistrationOpen && strings.Contains(b.String(), "registration is open") {
			t.Errorf("%s: banner says registration is open:\n%s", mode, b.String())
		}
	}
}
