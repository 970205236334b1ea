package main

import (
	"reflect"
	"testing"
)

// TestFederationConfigMapped checks that the federation client settings
// reach homeserver.Config, and that they default to the safe values.
func TestFederationConfigMapped(t *testing.T) {
	cfg := defaultConfig()
	hc := homeserverConfig(&cfg, &material{}, boundAddrs{}, false)
	if hc.Federation.SkipTLSVerify || len(hc.Federation.AllowNetworks) != 0 {
		t.Fatalf("defaults: %+v", hc.Federation)
	}
	cfg.Federation.SkipTLSVerify = true
	cfg.Federation.AllowCIDRs = []string{"127.0.0.1/32"}
	hc = homeserverConfig(&cfg, &material{}, boundAddrs{}, false)
	if !hc.Federation.SkipTLSVerify || !reflect.DeepEqual(hc.Federation.AllowNetworks, []string{"127.0.0.1/32"}) {
		t.Fatalf("mapped: %+v", hc.Federation)
	}
}
