package federation

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// AddrPolicy decides which IP addresses outbound federation may connect to.
// Loopback, private, link-local, CGNAT, unspecified and multicast addresses
// are refused unless an allowed prefix admits them. The check runs in the
// dialer's Control hook, on the address actually dialled, so it applies
// after DNS resolution and after every redirect alike.
type AddrPolicy struct {
	allow []netip.Prefix
}

// cgnat is 100.64.0.0/10 (RFC 6598), shared address space.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// NewAddrPolicy is the policy that admits the CIDRs (or single IPs) in
// allow besides public addresses; an entry that is neither is ErrConfig.
// Push delivery to gateways uses the same policy with its own list.
func NewAddrPolicy(allow []string) (AddrPolicy, error) {
	var p AddrPolicy
	for _, s := range allow {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return AddrPolicy{}, fmt.Errorf("%w: allow-list entry %q is neither a CIDR nor an IP", ErrConfig, s)
			}
			pfx = netip.PrefixFrom(addr, addr.BitLen())
		}
		p.allow = append(p.allow, pfx.Masked())
	}
	return p, nil
}

// permitted reports whether ip may be dialled.
func (p AddrPolicy) permitted(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, pfx := range p.allow {
		if pfx.Contains(ip) {
			return true
		}
	}
	switch {
	case ip.IsLoopback(), ip.IsPrivate(), ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(),
		ip.IsUnspecified(), ip.IsMulticast(), ip.IsInterfaceLocalMulticast(), cgnat.Contains(ip):
		return false
	}
	return true
}

// Control is a net.Dialer Control hook enforcing the policy.
func (p AddrPolicy) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot check address %q", ErrForbiddenAddress, address)
	}
	if !p.permitted(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
	}
	return nil
}

// fedTransport is the http.RoundTripper of outbound federation. It serves
// "matrix://<server name>/path" URLs (what gomatrixserverlib's client
// builds) by resolving the server name, and plain https URLs (redirects,
// well-known); every connection goes through the guarded dialer and TLS
// (verification off only when skipVerify is set by explicit config).
type fedTransport struct {
	resolver   *serverResolver
	dialer     *net.Dialer
	skipVerify bool

	mu sync.Mutex // guards byName
	// byName holds one transport per TLS server name, so that pooled
	// connections are never shared between names.
	byName map[string]*http.Transport
}

func newFedTransport(policy AddrPolicy, skipVerify bool, resolver *net.Resolver) *fedTransport {
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	t := &fedTransport{
		dialer:     &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: policy.Control, Resolver: resolver},
		skipVerify: skipVerify,
		byName:     make(map[string]*http.Transport),
	}
	wkClient := &http.Client{Transport: roundTripFunc(t.roundTripHTTPS), Timeout: 10 * time.Second,
		CheckRedirect: func(_ *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("%w: too many redirects", ErrFederation)
			}
			return nil
		}}
	t.resolver = &serverResolver{wellKnown: fetchWellKnown(wkClient), lookupSRV: resolver.LookupSRV}
	return t
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (t *fedTransport) transportFor(sni string) *http.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr, ok := t.byName[sni]; ok {
		return tr
	}
	tr := &http.Transport{
		DialContext: t.dialer.DialContext,
		TLSClientConfig: &tls.Config{
			ServerName:         sni,
			InsecureSkipVerify: t.skipVerify, //nolint:gosec // only by explicit config (test setups)
			MinVersion:         tls.VersionTLS12,
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
	}
	t.byName[sni] = tr
	return tr
}

func (t *fedTransport) roundTripHTTPS(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" {
		return nil, fmt.Errorf("%w: refusing %s URL", ErrFederation, r.URL.Scheme)
	}
	return t.transportFor(r.URL.Hostname()).RoundTrip(r)
}

// RoundTrip implements http.RoundTripper.
func (t *fedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "matrix" && r.URL.Scheme != "matrix-federation" {
		return t.roundTripHTTPS(r)
	}
	targets, err := t.resolver.resolve(r.Context(), r.URL.Host)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for i, target := range targets {
		req := r.Clone(r.Context())
		if i > 0 && r.Body != nil {
			if r.GetBody == nil {
				break
			}
			if req.Body, err = r.GetBody(); err != nil {
				return nil, err
			}
		}
		u := *r.URL
		u.Scheme, u.Host = "https", target.Addr
		req.URL, req.Host = &u, target.Host
		resp, err := t.transportFor(target.SNI).RoundTrip(req)
		if err == nil {
			return resp, nil
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("%w: no address for %s", ErrFederation, r.URL.Host)
	}
	return nil, lastErr
}

// closeIdle drops pooled connections (on shutdown).
func (t *fedTransport) closeIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tr := range t.byName {
		tr.CloseIdleConnections()
	}
}
