package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestMatrixRTCConfig: the matrix_rtc section reaches the homeserver, its
// defaults keep discovery on, and bad values are named by key.
func TestMatrixRTCConfig(t *testing.T) {
	dir := t.TempDir()
	def, err := loadFor(t, []string{"--config", writeFile(t, dir, "d.yaml", "server_name: example.org\n")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rtc := homeserverRTC(def.MatrixRTC); rtc.DiscoveryDisabled || rtc.MaxDelay != 24*time.Hour || rtc.LiveKitServiceURL != "" {
		t.Fatalf("defaults: %+v", rtc)
	}
	file := writeFile(t, dir, "c.yaml", "server_name: example.org\nmatrix_rtc:\n  discovery: false\n  livekit_service_url: https://rtc.example.org/jwt\n  max_delay: 1h\n")
	cfg, err := loadFor(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rtc := homeserverRTC(cfg.MatrixRTC); !rtc.DiscoveryDisabled || rtc.MaxDelay != time.Hour || rtc.LiveKitServiceURL != "https://rtc.example.org/jwt" {
		t.Fatalf("from file: %+v", rtc)
	}
	for _, tc := range []struct{ yaml, key string }{
		{"matrix_rtc:\n  livekit_service_url: rtc.example.org\n", "matrix_rtc.livekit_service_url"},
		{"matrix_rtc:\n  max_delay: -1s\n", "matrix_rtc.max_delay"},
	} {
		_, err := loadFor(t, []string{"--config", writeFile(t, dir, "bad.yaml", "server_name: example.org\n"+tc.yaml)}, nil)
		if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: error %v, want one naming %s", tc.yaml, err, tc.key)
		}
	}
}
