package turn

import (
	"fmt"
	"net/netip"
)

// Reason says why the peer policy refused a peer address. The zero value,
// ReasonNone, means the address is admitted.
type Reason uint8

// Reasons, one per address class of the deny table, plus the operator's own
// deny list and the server's own listener addresses. Their String values are
// the "reason" label of the switchboard_turn_peer_denials_total metric.
const (
	ReasonNone Reason = iota
	ReasonInvalid
	ReasonDenyList
	ReasonOwnAddress
	ReasonUnspecified
	ReasonLoopback
	ReasonPrivate
	ReasonCGNAT
	ReasonLinkLocal
	ReasonMulticast
	ReasonBroadcast
	ReasonIETFProtocol
	ReasonBenchmarking
	ReasonReserved
	ReasonDocumentation
	ReasonDiscard
	ReasonDeprecated
	reasonCount
)

var reasonNames = [reasonCount]string{
	ReasonNone:          "none",
	ReasonInvalid:       "invalid",
	ReasonDenyList:      "deny_list",
	ReasonOwnAddress:    "own_address",
	ReasonUnspecified:   "unspecified",
	ReasonLoopback:      "loopback",
	ReasonPrivate:       "private",
	ReasonCGNAT:         "cgnat",
	ReasonLinkLocal:     "link_local",
	ReasonMulticast:     "multicast",
	ReasonBroadcast:     "broadcast",
	ReasonIETFProtocol:  "ietf_protocol",
	ReasonBenchmarking:  "benchmarking",
	ReasonReserved:      "reserved",
	ReasonDocumentation: "documentation",
	ReasonDiscard:       "discard",
	ReasonDeprecated:    "deprecated",
}

// String returns the metric label of the reason.
func (r Reason) String() string {
	if r < reasonCount {
		return reasonNames[r]
	}
	return "unknown"
}

// classRange is one row of the deny table.
type classRange struct {
	prefix netip.Prefix
	reason Reason
}

// specialV4 is the IPv4 part of the deny table (IANA IPv4 Special-Purpose
// Address Registry, RFC 6890 and its updates). It is never written after
// package initialisation. Order matters: the first match wins, so the
// broadcast address comes before 240.0.0.0/4.
var specialV4 = [...]classRange{
	{netip.MustParsePrefix("0.0.0.0/8"), ReasonUnspecified},         // RFC 791 "this network"
	{netip.MustParsePrefix("10.0.0.0/8"), ReasonPrivate},            // RFC 1918
	{netip.MustParsePrefix("100.64.0.0/10"), ReasonCGNAT},           // RFC 6598
	{netip.MustParsePrefix("127.0.0.0/8"), ReasonLoopback},          // RFC 1122
	{netip.MustParsePrefix("169.254.0.0/16"), ReasonLinkLocal},      // RFC 3927
	{netip.MustParsePrefix("172.16.0.0/12"), ReasonPrivate},         // RFC 1918
	{netip.MustParsePrefix("192.0.0.0/24"), ReasonIETFProtocol},     // RFC 6890
	{netip.MustParsePrefix("192.0.2.0/24"), ReasonDocumentation},    // RFC 5737 TEST-NET-1
	{netip.MustParsePrefix("192.88.99.0/24"), ReasonDeprecated},     // RFC 7526 6to4 relay anycast
	{netip.MustParsePrefix("192.168.0.0/16"), ReasonPrivate},        // RFC 1918
	{netip.MustParsePrefix("198.18.0.0/15"), ReasonBenchmarking},    // RFC 2544
	{netip.MustParsePrefix("198.51.100.0/24"), ReasonDocumentation}, // RFC 5737 TEST-NET-2
	{netip.MustParsePrefix("203.0.113.0/24"), ReasonDocumentation},  // RFC 5737 TEST-NET-3
	{netip.MustParsePrefix("224.0.0.0/4"), ReasonMulticast},         // RFC 5771
	{netip.MustParsePrefix("255.255.255.255/32"), ReasonBroadcast},  // RFC 919
	{netip.MustParsePrefix("240.0.0.0/4"), ReasonReserved},          // RFC 1112
}

// specialV6 is the IPv6 part of the deny table (IANA IPv6 Special-Purpose
// Address Registry). v4-mapped (::ffff:0:0/96), 6to4 (2002::/16) and NAT64
// (64:ff9b::/96) addresses are handled before this table by classifying the
// IPv4 address they embed. Anything outside 2000::/3 that is not listed here
// is refused as reserved (fail-closed). Never written after initialisation.
var specialV6 = [...]classRange{
	{netip.MustParsePrefix("::/128"), ReasonUnspecified},          // RFC 4291
	{netip.MustParsePrefix("::1/128"), ReasonLoopback},            // RFC 4291
	{netip.MustParsePrefix("::/96"), ReasonDeprecated},            // RFC 4291 IPv4-compatible
	{netip.MustParsePrefix("64:ff9b:1::/48"), ReasonPrivate},      // RFC 8215 local-use NAT64
	{netip.MustParsePrefix("100::/64"), ReasonDiscard},            // RFC 6666
	{netip.MustParsePrefix("2001::/23"), ReasonIETFProtocol},      // RFC 2928 (Teredo, ORCHID, benchmarking)
	{netip.MustParsePrefix("2001:db8::/32"), ReasonDocumentation}, // RFC 3849
	{netip.MustParsePrefix("3fff::/20"), ReasonDocumentation},     // RFC 9637
	{netip.MustParsePrefix("5f00::/16"), ReasonReserved},          // RFC 9602 SRv6 SIDs
	{netip.MustParsePrefix("fc00::/7"), ReasonPrivate},            // RFC 4193 unique local
	{netip.MustParsePrefix("fe80::/10"), ReasonLinkLocal},         // RFC 4291
	{netip.MustParsePrefix("fec0::/10"), ReasonPrivate},           // RFC 3879 deprecated site-local
	{netip.MustParsePrefix("ff00::/8"), ReasonMulticast},          // RFC 4291
}

// classifyV4 returns the deny-table class of an IPv4 address. Most
// addresses are decided by their first octet alone.
func classifyV4(a netip.Addr) Reason {
	switch o := a.As4()[0]; {
	case o == 0, o == 10, o == 100, o == 127, o == 169, o == 172, o == 192, o == 198, o == 203, o >= 224:
	default:
		return ReasonNone
	}
	for i := range specialV4 {
		if specialV4[i].prefix.Contains(a) {
			return specialV4[i].reason
		}
	}
	return ReasonNone
}

// embeddedV4 returns the IPv4 address that a v4-mapped (RFC 4291 §2.5.5.2),
// 6to4 (RFC 3056 §2) or well-known-prefix NAT64 (RFC 6052 §2.1) IPv6
// address carries.
func embeddedV4(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	switch {
	case a.Is4In6():
		return a.Unmap(), true
	case b[0] == 0x20 && b[1] == 0x02: // 2002::/16
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	case b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b &&
		b[4]|b[5]|b[6]|b[7]|b[8]|b[9]|b[10]|b[11] == 0: // 64:ff9b::/96
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	}
	return netip.Addr{}, false
}

// Classify returns the deny-table class of a peer address without looking
// at any operator list: ReasonNone for an ordinary global unicast address.
// IPv6 forms that embed an IPv4 address are classified by what they embed.
// It does not allocate.
func Classify(a netip.Addr) Reason {
	if !a.IsValid() {
		return ReasonInvalid
	}
	a = a.WithZone("")
	if a.Is4() {
		return classifyV4(a)
	}
	if v4, ok := embeddedV4(a); ok {
		return classifyV4(v4)
	}
	for i := range specialV6 {
		if specialV6[i].prefix.Contains(a) {
			return specialV6[i].reason
		}
	}
	// Only 2000::/3 is allocated for global unicast (RFC 4291 §2.4).
	if a.As16()[0]&0xe0 != 0x20 {
		return ReasonReserved
	}
	return ReasonNone
}

// Policy decides which peer addresses the relay may talk to (RFC 8656 §21.8
// and §17: a TURN server must not become a way into the networks behind
// it). It is immutable after construction and safe for concurrent use.
type Policy struct {
	allow []netip.Prefix
	deny  []netip.Prefix
	own   []netip.AddrPort // port 0 means every port of that address
}

// NewPolicy parses the operator's allow and deny lists (CIDR notation, or a
// bare address meaning a single host) and records the server's own listener
// addresses. A list entry that does not parse is an error: the relay never
// starts with a policy it did not understand.
func NewPolicy(allow, deny []string, own []netip.AddrPort) (*Policy, error) {
	p := &Policy{}
	var err error
	if p.allow, err = parsePrefixes(allow); err != nil {
		return nil, fmt.Errorf("%w: allow list: %w", ErrBadCIDR, err)
	}
	if p.deny, err = parsePrefixes(deny); err != nil {
		return nil, fmt.Errorf("%w: deny list: %w", ErrBadCIDR, err)
	}
	for _, ap := range own {
		if !ap.Addr().IsValid() {
			return nil, fmt.Errorf("%w: %v", ErrBadOwnAddr, ap)
		}
		p.own = append(p.own, netip.AddrPortFrom(canonical(ap.Addr()), ap.Port()))
	}
	return p, nil
}

func parsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q: %w", s, err)
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		if pfx.Addr().Zone() != "" {
			return nil, fmt.Errorf("%q: zones are not allowed", s)
		}
		out = append(out, canonicalPrefix(pfx.Masked()))
	}
	return out, nil
}

// canonical strips the zone and unmaps v4-mapped IPv6 addresses so that
// ::ffff:10.0.0.1 and 10.0.0.1 are one address for every list.
func canonical(a netip.Addr) netip.Addr {
	return a.WithZone("").Unmap()
}

// canonicalPrefix turns a v4-mapped IPv6 prefix of length ≥ 96 into the
// IPv4 prefix it covers.
func canonicalPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

func containsAny(list []netip.Prefix, a netip.Addr) bool {
	for i := range list {
		if list[i].Contains(a) {
			return true
		}
	}
	return false
}

// Check returns why the relay must not send to ap, or ReasonNone. The order
// is: the operator's deny list (always wins), then the server's own
// listener addresses (refused even when the allow list covers them: an
// allow list that admits loopback for a test or --dev setup must not let a
// client relay into this server's own client, federation, TURN, SFU or
// metrics ports), then the allow list (admits anything else it covers),
// then the deny table. It does not allocate.
func (p *Policy) Check(ap netip.AddrPort) Reason {
	a := ap.Addr()
	if !a.IsValid() {
		return ReasonInvalid
	}
	a = canonical(a)
	if containsAny(p.deny, a) {
		return ReasonDenyList
	}
	if v4, ok := embeddedV4(a); ok && containsAny(p.deny, v4) {
		return ReasonDenyList // 6to4 or NAT64 form of a denied IPv4 address
	}
	v4, embeds := embeddedV4(a)
	for i := range p.own {
		o := p.own[i]
		if (o.Addr() == a || embeds && o.Addr() == v4) && (o.Port() == 0 || o.Port() == ap.Port()) {
			return ReasonOwnAddress
		}
	}
	if containsAny(p.allow, a) {
		return ReasonNone
	}
	return Classify(a)
}

// CheckIP is Check for a bare address, as pion's permission handler sees it:
// own addresses count only when they were given with port 0.
func (p *Policy) CheckIP(a netip.Addr) Reason {
	return p.Check(netip.AddrPortFrom(a, 0))
}
