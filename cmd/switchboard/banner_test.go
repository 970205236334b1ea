package main

import (
	"strings"
	"testing"

	"github.com/switchboard-chat/switchboard/homeserver"
)

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
		printDevBanner(&b, &cfg, boundAddrs{}, homeserver.Config{Registration: mode, PublicBaseURL: "http://127.0.0.1:8008"})
		if !strings.Contains(b.String(), want) {
			t.Errorf("%s: banner lacks %q:\n%s", mode, want, b.String())
		}
		if mode != homeserver.RegistrationOpen && strings.Contains(b.String(), "registration is open") {
			t.Errorf("%s: banner says registration is open:\n%s", mode, b.String())
		}
	}
}
