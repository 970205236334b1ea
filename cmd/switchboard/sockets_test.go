package main

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestTurnURIs(t *testing.T) {
	addrs := boundAddrs{TURNUDP: "0.0.0.0:3478", TURNTCP: "[::]:3478", TURNTLS: "0.0.0.0:5349"}
	tests := []struct {
		name  string
		cfg   Config
		addrs boundAddrs
		want  []string
	}{
		{"from relay ip", Config{ServerName: "example.org", TURN: TURNConfig{RelayIP: "203.0.113.7"}}, addrs, []string{
			"turn:203.0.113.7:3478?transport=udp", "turn:203.0.113.7:3478?transport=tcp", "turns:203.0.113.7:5349?transport=tcp"}},
		{"from server name", Config{ServerName: "example.org:8448"}, boundAddrs{TURNUDP: "0.0.0.0:3478"}, []string{
			"turn:example.org:3478?transport=udp"}},
		{"ipv6 relay", Config{ServerName: "example.org", TURN: TURNConfig{RelayIP: "2001:db8::1"}}, boundAddrs{TURNTCP: "[::]:3478"}, []string{
			"turn:[2001:db8::1]:3478?transport=tcp"}},
		{"configured", Config{ServerName: "example.org", TURN: TURNConfig{URIs: []string{"turns:turn.example.org:443?transport=tcp"}}}, addrs, []string{
			"turns:turn.example.org:443?transport=tcp"}},
		{"turn off", Config{ServerName: "example.org", TURN: TURNConfig{URIs: []string{"turn:x"}}}, boundAddrs{}, nil},
	}
	for _, tc := range tests {
		if got := turnURIs(&tc.cfg, tc.addrs); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestOwnAddrs(t *testing.T) {
	relay := netip.MustParseAddr("203.0.113.7")
	got := ownAddrs(boundAddrs{Client: "[::]:8008", Metrics: "127.0.0.1:9090", MediaUDP: "0.0.0.0:7882"}, relay,
		[]netip.Addr{netip.MustParseAddr("10.1.2.3"), relay})
	want := []netip.AddrPort{
		netip.MustParseAddrPort("203.0.113.7:8008"),
		netip.MustParseAddrPort("127.0.0.1:8008"),
		netip.MustParseAddrPort("[::1]:8008"),
		netip.MustParseAddrPort("10.1.2.3:8008"),
		netip.MustParseAddrPort("127.0.0.1:9090"),
		netip.MustParseAddrPort("203.0.113.7:7882"),
		netip.MustParseAddrPort("127.0.0.1:7882"),
		netip.MustParseAddrPort("[::1]:7882"),
		netip.MustParseAddrPort("10.1.2.3:7882"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestDisplayAddr(t *testing.T) {
	for in, want := range map[string]string{
		"[::]:8008":      "127.0.0.1:8008",
		":8008":          "127.0.0.1:8008",
		"0.0.0.0:1":      "127.0.0.1:1",
		"10.1.2.3:8008":  "10.1.2.3:8008",
		"[::1]:8008":     "[::1]:8008",
		"not an address": "not an address",
	} {
		if got := displayAddr(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
