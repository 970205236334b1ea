package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/switchboard-chat/switchboard/homeserver"
)

// printDevBanner tells a person at a console where everything is and that
// --dev is not for production.
func printDevBanner(w io.Writer, cfg *Config, addrs boundAddrs, hc homeserver.Config) {
	var b strings.Builder
	b.WriteString("\nSwitchboard is running in DEVELOPMENT mode. Do not use it in production:\n")
	fmt.Fprintf(&b, "%s, keys and certificates are self-signed, secrets live in the data directory,\n", registrationPhrase(hc.Registration))
	b.WriteString("TURN may relay to loopback addresses (never to this server's own ports).\n\n")
	fmt.Fprintf(&b, "  Server name:  %s\n", cfg.ServerName)
	fmt.Fprintf(&b, "  Client API:   %s\n", hc.PublicBaseURL)
	if addrs.Federation != "" {
		fmt.Fprintf(&b, "  Federation:   https://%s (self-signed certificate)\n", displayAddr(addrs.Federation))
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
		b.WriteString("\n")
	} else {
		b.WriteString("  SFU:          off\n")
	}
	if addrs.Metrics != "" {
		fmt.Fprintf(&b, "  Metrics:      %s/metrics\n", httpURL(addrs.Metrics, false))
	}
	fmt.Fprintf(&b, "  Health:       %s/health  %s/ready\n", hc.PublicBaseURL, hc.PublicBaseURL)
	fmt.Fprintf(&b, "  Data:         %s\n\n", cfg.DataDir)
	fmt.Fprintf(&b, "Create an admin user:  switchboard register --data-dir %s --url %s --user alice --admin\n", cfg.DataDir, hc.PublicBaseURL)
	b.WriteString("Stop with Ctrl-C.\n\n")
	_, _ = io.WriteString(w, b.String())
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
