package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-chat/switchboard/turn"
)

// TestDockerfileMatchesDefaults keeps the image (which cannot be built in
// this test) in step with the code: it exposes every default listener and
// the default TURN relay range, not the metrics port the default config
// binds to 127.0.0.1, and has a HEALTHCHECK run by the binary itself.
func TestDockerfileMatchesDefaults(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var exposed []string
	var healthcheck string
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(l, "\\") + " " + strings.TrimSpace(lines[i])
		}
		if rest, ok := strings.CutPrefix(l, "EXPOSE "); ok {
			exposed = append(exposed, strings.Fields(rest)...)
		}
		if rest, ok := strings.CutPrefix(l, "HEALTHCHECK "); ok {
			healthcheck = rest
		}
	}
	cfg := defaultConfig()
	want := []string{
		portOf(cfg.Client.Listen) + "/tcp",
		portOf(cfg.Federation.Listen) + "/tcp",
		portOf(cfg.TURN.Listen) + "/udp",
		portOf(cfg.TURN.Listen) + "/tcp",
		portOf(cfg.TURN.TLSListen) + "/tcp",
		portOf(cfg.SFU.UDPListen) + "/udp",
		portOf(cfg.SFU.TCPListen) + "/tcp",
		fmt.Sprintf("%d-%d/udp", turn.DefaultRelayPortMin, turn.DefaultRelayPortMax),
	}
	for _, w := range want {
		if !slices.Contains(exposed, w) {
			t.Errorf("Dockerfile does not EXPOSE %s (exposes %v)", w, exposed)
		}
	}
	if host := hostOf(cfg.Metrics.Listen); host == "127.0.0.1" && slices.ContainsFunc(exposed, func(e string) bool { return strings.HasPrefix(e, portOf(cfg.Metrics.Listen)+"/") }) {
		t.Errorf("Dockerfile exposes the metrics port, which the default config binds to %s", cfg.Metrics.Listen)
	}
	if !strings.Contains(healthcheck, `"/usr/local/bin/switchboard", "health"`) {
		t.Errorf("HEALTHCHECK %q does not run `switchboard health`", healthcheck)
	}
}
