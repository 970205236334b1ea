package turn

import (
	"errors"
	"net/netip"
	"testing"
)

// denyTable lists an address of every class the relay refuses, with the
// reason it must give. The socket-level deny test reuses it.
var denyTable = []struct {
	addr   string
	reason Reason
}{
	{"0.0.0.0", ReasonUnspecified},
	{"0.1.2.3", ReasonUnspecified},
	{"127.0.0.1", ReasonLoopback},
	{"127.0.0.2", ReasonLoopback},
	{"127.255.255.254", ReasonLoopback},
	{"10.0.0.1", ReasonPrivate},
	{"10.255.255.255", ReasonPrivate},
	{"172.16.0.1", ReasonPrivate},
	{"172.31.255.254", ReasonPrivate},
	{"192.168.1.1", ReasonPrivate},
	{"100.64.0.1", ReasonCGNAT},
	{"100.127.255.254", ReasonCGNAT},
	{"169.254.169.254", ReasonLinkLocal},
	{"224.0.0.1", ReasonMulticast},
	{"239.255.255.250", ReasonMulticast},
	{"255.255.255.255", ReasonBroadcast},
	{"192.0.0.8", ReasonIETFProtocol},
	{"198.18.0.1", ReasonBenchmarking},
	{"198.19.255.254", ReasonBenchmarking},
	{"240.0.0.1", ReasonReserved},
	{"192.0.2.1", ReasonDocumentation},
	{"198.51.100.1", ReasonDocumentation},
	{"203.0.113.1", ReasonDocumentation},
	{"::", ReasonUnspecified},
	{"::1", ReasonLoopback},
	{"fc00::1", ReasonPrivate},
	{"fd12:3456::1", ReasonPrivate},
	{"fe80::1", ReasonLinkLocal},
	{"fe80::1%eth0", ReasonLinkLocal},
	{"ff02::1", ReasonMulticast},
	{"ff0e::1", ReasonMulticast},
	{"2001:db8::1", ReasonDocumentation},
	{"3fff::1", ReasonDocumentation},
	{"2001::1", ReasonIETFProtocol}, // Teredo
	{"100::1", ReasonDiscard},
	{"::7f00:1", ReasonDeprecated}, // IPv4-compatible
	{"::ffff:127.0.0.1", ReasonLoopback},
	{"::ffff:10.0.0.1", ReasonPrivate},
	{"::ffff:169.254.1.1", ReasonLinkLocal},
	{"::ffff:0.0.0.0", ReasonUnspecified},
	{"::ffff:100.64.0.1", ReasonCGNAT},
	{"2002:7f00:1::", ReasonLoopback},       // 6to4 of 127.0.0.1
	{"2002:c0a8:101::1", ReasonPrivate},     // 6to4 of 192.168.1.1
	{"2002:a9fe:a9fe::", ReasonLinkLocal},   // 6to4 of 169.254.169.254
	{"2002:e000:1::", ReasonMulticast},      // 6to4 of 224.0.0.1
	{"64:ff9b::7f00:1", ReasonLoopback},     // NAT64 of 127.0.0.1
	{"64:ff9b::a00:1", ReasonPrivate},       // NAT64 of 10.0.0.1
	{"64:ff9b::6440:1", ReasonCGNAT},        // NAT64 of 100.64.0.1
	{"64:ff9b::ffff:ffff", ReasonBroadcast}, // NAT64 of 255.255.255.255
	{"64:ff9b:1::1", ReasonPrivate},         // local-use NAT64
	{"4000::1", ReasonReserved},             // outside 2000::/3
}

// allowTable lists ordinary public addresses the relay must admit.
var allowTable = []string{
	"1.1.1.1", "8.8.8.8", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0",
	"192.0.1.1", "192.169.0.1", "198.17.255.255", "198.20.0.0", "223.255.255.255",
	"2606:4700::1111", "2a00:1450::1", "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808",
	"2001:200::1",
}

func TestClassify(t *testing.T) {
	for _, tt := range denyTable {
		t.Run(tt.addr, func(t *testing.T) {
			if got := Classify(netip.MustParseAddr(tt.addr)); got != tt.reason {
				t.Fatalf("Classify(%s) = %v, want %v", tt.addr, got, tt.reason)
			}
		})
	}
	for _, a := range allowTable {
		t.Run(a, func(t *testing.T) {
			if got := Classify(netip.MustParseAddr(a)); got != ReasonNone {
				t.Fatalf("Classify(%s) = %v, want none", a, got)
			}
		})
	}
	if got := Classify(netip.Addr{}); got != ReasonInvalid {
		t.Fatalf("zero Addr: %v", got)
	}
}

func TestPolicyCheck(t *testing.T) {
	own := []netip.AddrPort{
		netip.MustParseAddrPort("8.8.4.4:3478"),
		netip.MustParseAddrPort("9.9.9.9:0"),
		netip.MustParseAddrPort("[2606:4700::1]:5349"),
	}
	p, err := NewPolicy(
		[]string{"127.0.0.1/32", "10.1.0.0/16", "::ffff:192.168.7.0/120", "1.2.3.4"},
		[]string{"10.1.2.0/24", "203.0.113.0/24", "4.4.4.4", "127.0.0.1/32"},
		own)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ap   string
		want Reason
	}{
		{"8.8.8.8:53", ReasonNone},
		{"10.1.9.9:1000", ReasonNone},             // allow-listed private
		{"[::ffff:10.1.9.9]:1000", ReasonNone},    // same, v4-mapped
		{"10.1.2.3:1000", ReasonDenyList},         // deny wins over allow
		{"127.0.0.1:1000", ReasonDenyList},        // deny wins over allow
		{"[2002:a01:203::]:1000", ReasonDenyList}, // 6to4 of a denied address
		{"[64:ff9b::404:404]:1", ReasonDenyList},  // NAT64 of a denied address
		{"4.4.4.4:1", ReasonDenyList},             // bare address entry
		{"192.168.7.9:1", ReasonNone},             // v4-mapped allow prefix covers IPv4
		{"192.168.8.9:1", ReasonPrivate},
		{"10.2.0.1:1", ReasonPrivate},
		{"8.8.4.4:3478", ReasonOwnAddress},
		{"[::ffff:8.8.4.4]:3478", ReasonOwnAddress},
		{"[2002:808:404::]:3478", ReasonOwnAddress},
		{"8.8.4.4:3479", ReasonNone}, // another port of our own address
		{"9.9.9.9:1", ReasonOwnAddress},
		{"[2606:4700::1]:5349", ReasonOwnAddress},
		{"[2606:4700::1]:443", ReasonNone},
		{"1.2.3.4:9", ReasonNone},
	}
	for _, tt := range tests {
		t.Run(tt.ap, func(t *testing.T) {
			if got := p.Check(netip.MustParseAddrPort(tt.ap)); got != tt.want {
				t.Fatalf("Check(%s) = %v, want %v", tt.ap, got, tt.want)
			}
		})
	}
	// An allow-list entry does not admit our own listeners, only the
	// address's other ports (issue 20: --dev allows loopback).
	p2, err := NewPolicy([]string{"8.8.4.4/32"}, nil, own)
	if err != nil {
		t.Fatal(err)
	}
	if got := p2.Check(netip.MustParseAddrPort("8.8.4.4:3478")); got != ReasonOwnAddress {
		t.Fatalf("allow-listed own listener: %v, want own_address", got)
	}
	if got := p2.Check(netip.MustParseAddrPort("8.8.4.4:3479")); got != ReasonNone {
		t.Fatalf("allow-listed address, another port: %v", got)
	}
	if got := p.CheckIP(netip.MustParseAddr("8.8.4.4")); got != ReasonNone {
		t.Fatalf("CheckIP of an own address with a port: %v (only port-0 entries apply)", got)
	}
	if got := p.CheckIP(netip.MustParseAddr("9.9.9.9")); got != ReasonOwnAddress {
		t.Fatalf("CheckIP of a port-0 own address: %v", got)
	}
}

func TestNewPolicyRejectsBadCIDRs(t *testing.T) {
	for _, bad := range []string{"", "10.0.0.0/33", "10.0.0/8", "::/129", "fe80::/10%eth0", "fe80::1%eth0", "example.org", "10.0.0.0/8 ", "1.2.3.4/-1"} {
		if _, err := NewPolicy([]string{bad}, nil, nil); !errors.Is(err, ErrBadCIDR) {
			t.Errorf("allow %q: err = %v, want ErrBadCIDR", bad, err)
		}
		if _, err := NewPolicy(nil, []string{bad}, nil); !errors.Is(err, ErrBadCIDR) {
			t.Errorf("deny %q: err = %v, want ErrBadCIDR", bad, err)
		}
	}
}

func TestPolicyCheckDoesNotAllocate(t *testing.T) {
	p, err := NewPolicy([]string{"127.0.0.1/32"}, []string{"10.9.0.0/16"}, []netip.AddrPort{netip.MustParseAddrPort("1.2.3.4:3478")})
	if err != nil {
		t.Fatal(err)
	}
	addrs := []netip.AddrPort{
		netip.MustParseAddrPort("8.8.8.8:1"), netip.MustParseAddrPort("[64:ff9b::a00:1]:1"),
		netip.MustParseAddrPort("[2606:4700::1]:1"), netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"),
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, a := range addrs {
			_ = p.Check(a)
		}
	}); n != 0 {
		t.Fatalf("Check allocates %v times per run", n)
	}
}

func BenchmarkPolicyCheck(b *testing.B) {
	p, err := NewPolicy([]string{"127.0.0.1/32"}, nil, []netip.AddrPort{netip.MustParseAddrPort("1.2.3.4:3478")})
	if err != nil {
		b.Fatal(err)
	}
	for _, a := range []string{"8.8.8.8:1", "[2606:4700::1]:1", "[64:ff9b::a00:1]:1"} {
		ap := netip.MustParseAddrPort(a)
		b.Run(a, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = p.Check(ap)
			}
		})
	}
}

// FuzzClassify checks invariants of the classifier on arbitrary addresses:
// the v4-mapped, 6to4 and NAT64 forms of a refused IPv4 address are
// refused too, and nothing panics.
func FuzzClassify(f *testing.F) {
	for _, tt := range denyTable {
		f.Add(netip.MustParseAddr(tt.addr).WithZone("").AsSlice(), uint16(1))
	}
	for _, a := range allowTable {
		f.Add(netip.MustParseAddr(a).AsSlice(), uint16(3478))
	}
	p, err := NewPolicy([]string{"127.0.0.1/32"}, []string{"10.9.0.0/16"}, []netip.AddrPort{netip.MustParseAddrPort("1.2.3.4:3478")})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		a, ok := netip.AddrFromSlice(b)
		r := Classify(a)
		if !ok {
			if r != ReasonInvalid {
				t.Fatalf("invalid address classified %v", r)
			}
			return
		}
		_ = p.Check(netip.AddrPortFrom(a, port))
		if !a.Is4() {
			return
		}
		v4 := a.As4()
		mapped := netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]})
		sixToFour := netip.AddrFrom16([16]byte{0: 0x20, 1: 0x02, 2: v4[0], 3: v4[1], 4: v4[2], 5: v4[3], 15: 1})
		nat64 := netip.AddrFrom16([16]byte{1: 0x64, 2: 0xff, 3: 0x9b, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]})
		for _, e := range []netip.Addr{mapped, sixToFour, nat64} {
			if got := Classify(e); got != r {
				t.Fatalf("Classify(%v) = %v but Classify(%v) = %v", e, got, a, r)
			}
		}
		if r == ReasonNone && (a.IsLoopback() || a.IsPrivate() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsUnspecified()) {
			t.Fatalf("%v admitted but the standard library calls it special", a)
		}
	})
}
