package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/switchboard-chat/switchboard/homeserver"
)

// bannerInfo is what the start-up banner says besides the addresses.
type bannerInfo struct {
	dev        bool
	self       string // how this binary was invoked, e.g. "bin/switchboard"
	configPath string // serve's --config, "" if none
}

// printBanner tells a person at a console where everything is: with --dev,
// that it is not for production; in production, the public URLs next to
// the local listeners, and how to add an admin and check the setup. The log
// (JSON in production) goes to stderr; this goes to stdout.
func printBanner(w io.Writer, cfg *Config, addrs boundAddrs, hc homeserver.Config, info bannerInfo) {
	var b strings.Builder
	localClient := httpURL(addrs.Client, cfg.Client.TLSCert != "")
	if info.dev {
		b.WriteString("\nSwitchboard is running in DEVELOPMENT mode. Do not use it in production:\n")
		fmt.Fprintf(&b, "%s, keys and certificates are self-signed, secrets live in the data directory,\n", registrationPhrase(hc.Registration))
		b.WriteString("TURN may relay to loopback addresses (never to this server's own ports).\n\n")
	} else {
		fmt.Fprintf(&b, "\nSwitchboard is running (%s).\n\n", registrationPhrase(hc.Registration))
	}
	fmt.Fprintf(&b, "  Server name:  %s\n", cfg.ServerName)
	switch {
	case info.dev:
		fmt.Fprintf(&b, "  Client API:   %s\n", hc.PublicBaseURL)
	case hc.PublicBaseURL != "":
		fmt.Fprintf(&b, "  Client API:   %s (public_base_url), listening on %s\n", hc.PublicBaseURL, localClient)
	default:
		fmt.Fprintf(&b, "  Client API:   %s (set public_base_url to the URL clients use)\n", localClient)
	}
	if addrs.Federation != "" {
		if info.dev {
			fmt.Fprintf(&b, "  Federation:   https://%s (self-signed certificate)\n", displayAddr(addrs.Federation))
		} else {
			fmt.Fprintf(&b, "  Federation:   listening on %s (TLS) for %s\n", addrs.Federation, cfg.ServerName)
		}
	}
	if len(hc.TURN.URIs) > 0 {
		fmt.Fprintf(&b, "  TURN:         %s\n", strings.Join(hc.TURN.URIs, "\n                "))
	} else {
		b.WriteString("  TURN:         off\n")
	}
	if addrs.MediaUDP != "" {
		fmt.Fprintf(&b, "  SFU media:    udp %s", displayAddr(addrs.MediaUDP))
		if addrs.MediaTCP != "" {
			fmt.Fprintf(&b, ", tcp %s", displayAddr(addrs.MediaTCP))
		}
		if cfg.PublicIP != "" && !info.dev {
			fmt.Fprintf(&b, " (advertised as %s)", cfg.PublicIP)
		}
		b.WriteString("\n")
	} else {
		b.WriteString("  SFU:          off\n")
	}
	if addrs.Metrics != "" {
		fmt.Fprintf(&b, "  Metrics:      %s/metrics\n", httpURL(addrs.Metrics, false))
	}
	fmt.Fprintf(&b, "  Health:       %s/health  %s/ready\n", localClient, localClient)
	fmt.Fprintf(&b, "  Data:         %s\n\n", cfg.DataDir)
	self := info.self
	if self == "" {
		self = "switchboard"
	}
	switch {
	case info.dev:
		fmt.Fprintf(&b, "Create an admin user:  %s register --data-dir %s --url %s --user alice --admin\n", self, cfg.DataDir, localClient)
		b.WriteString("Stop with Ctrl-C.\n\n")
	case cfg.Registration.SharedSecret == "":
		b.WriteString("Create an admin user:  set registration.shared_secret, restart, then run register\n")
	case info.configPath != "":
		fmt.Fprintf(&b, "Create an admin user:  %s register --config %s --url %s --user alice --admin\n", self, info.configPath, localClient)
	default:
		fmt.Fprintf(&b, "Create an admin user:  SWITCHBOARD_REGISTRATION_SHARED_SECRET=... %s register --url %s --user alice --admin\n", self, localClient)
	}
	if !info.dev {
		cfgArg := ""
		if info.configPath != "" {
			cfgArg = " --config " + info.configPath
		}
		fmt.Fprintf(&b, "Check the setup:       %s doctor%s (with the flags given to serve)\n\n", self, cfgArg)
	}
	_, _ = io.WriteString(w, b.String())
}

// invokedAs is how a person at this console runs the binary again: the
// path it was started by (bin/switchboard, /usr/local/bin/switchboard, or
// switchboard when found on PATH), or `go run ./cmd/switchboard` for a
// binary that `go run` built into its cache.
func invokedAs(arg0 string) string {
	switch {
	case arg0 == "":
		return "switchboard"
	case strings.Contains(filepath.ToSlash(arg0), "/go-build"):
		return "go run ./cmd/switchboard"
	}
	return arg0
}

// registrationPhrase says how accounts are made, as the banner puts it.
func registrationPhrase(mode string) string {
	switch mode {
	case homeserver.RegistrationOpen:
		return "registration is open"
	case homeserver.RegistrationToken:
		return "registration needs a registration token"
	default:
		return "registration is closed"
	}
}
