package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// defaultFederationPort is used for a server name without a port when
// neither well-known delegation nor SRV gives one (spec: Server-Server API,
// "Resolving server names", step 6).
const defaultFederationPort = 8448

// maxWellKnownBytes bounds a /.well-known/matrix/server body.
const maxWellKnownBytes = 64 << 10

// resolvedServer is where to send a request for a server name.
type resolvedServer struct {
	// Addr is the host:port to connect to (a hostname, resolved by the
	// guarded dialer, or an IP literal).
	Addr string
	// Host is the Host header to send.
	Host string
	// SNI is the TLS server name (and the name the certificate must match).
	SNI string
}

// serverResolver turns a Matrix server name into addresses. Its lookups are
// fields so that tests can resolve without DNS.
type serverResolver struct {
	// wellKnown fetches https://host/.well-known/matrix/server and returns
	// its m.server, or an error when there is none.
	wellKnown func(ctx context.Context, host string) (string, error)
	// lookupSRV is net.Resolver.LookupSRV.
	lookupSRV func(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// splitServerName splits a server name into host and port (0 when absent).
// IPv6 literals keep their brackets off in host.
func splitServerName(name string) (host string, port int, err error) {
	if name == "" {
		return "", 0, fmt.Errorf("%w: empty server name", ErrFederation)
	}
	if strings.HasPrefix(name, "[") {
		end := strings.IndexByte(name, ']')
		if end < 0 {
			return "", 0, fmt.Errorf("%w: bad IPv6 literal in %q", ErrFederation, name)
		}
		host, rest := name[1:end], name[end+1:]
		if _, err := netip.ParseAddr(host); err != nil {
			return "", 0, fmt.Errorf("%w: bad IPv6 literal in %q", ErrFederation, name)
		}
		if rest == "" {
			return host, 0, nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", 0, fmt.Errorf("%w: bad server name %q", ErrFederation, name)
		}
		port, err := parsePort(rest[1:])
		return host, port, err
	}
	host, portStr, hasPort := strings.Cut(name, ":")
	if host == "" || strings.ContainsAny(host, "/@ []") {
		return "", 0, fmt.Errorf("%w: bad server name %q", ErrFederation, name)
	}
	if !hasPort {
		return host, 0, nil
	}
	port, err = parsePort(portStr)
	return host, port, err
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%w: bad port %q", ErrFederation, s)
	}
	return p, nil
}

func isIPLiteral(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// resolve follows the spec's order (Server-Server API, "Resolving server
// names"): an IP literal or an explicit port is used directly; otherwise
// /.well-known/matrix/server may delegate (and the delegated name goes
// through the same steps, without well-known); then SRV
// _matrix-fed._tcp (and the deprecated _matrix._tcp); then port 8448.
func (r *serverResolver) resolve(ctx context.Context, serverName string) ([]resolvedServer, error) {
	host, port, err := splitServerName(serverName)
	if err != nil {
		return nil, err
	}
	if isIPLiteral(host) || port != 0 {
		return []resolvedServer{direct(host, port, serverName)}, nil
	}
	if r.wellKnown != nil {
		if delegated, err := r.wellKnown(ctx, host); err == nil && delegated != "" {
			dHost, dPort, err := splitServerName(delegated)
			if err != nil {
				return nil, err
			}
			if isIPLiteral(dHost) || dPort != 0 {
				return []resolvedServer{direct(dHost, dPort, delegated)}, nil
			}
			if out := r.srv(ctx, dHost, delegated); len(out) > 0 {
				return out, nil
			}
			return []resolvedServer{direct(dHost, defaultFederationPort, delegated)}, nil
		}
	}
	if out := r.srv(ctx, host, serverName); len(out) > 0 {
		return out, nil
	}
	return []resolvedServer{direct(host, defaultFederationPort, serverName)}, nil
}

// direct is a resolution without SRV: connect to host:port, send Host as
// the server name, and expect a certificate for host.
func direct(host string, port int, hostHeader string) resolvedServer {
	if port == 0 {
		port = defaultFederationPort
	}
	sni := host
	if isIPLiteral(host) {
		sni = ""
	}
	return resolvedServer{Addr: net.JoinHostPort(host, strconv.Itoa(port)), Host: hostHeader, SNI: sni}
}

// srv looks up _matrix-fed._tcp then _matrix._tcp for host. The
// certificate must still be valid for host (not for the SRV target).
func (r *serverResolver) srv(ctx context.Context, host, hostHeader string) []resolvedServer {
	if r.lookupSRV == nil {
		return nil
	}
	for _, service := range []string{"matrix-fed", "matrix"} {
		_, recs, err := r.lookupSRV(ctx, service, "tcp", host)
		if err != nil || len(recs) == 0 {
			continue
		}
		sort.SliceStable(recs, func(i, j int) bool {
			if recs[i].Priority != recs[j].Priority {
				return recs[i].Priority < recs[j].Priority
			}
			return recs[i].Weight > recs[j].Weight
		})
		var out []resolvedServer
		for _, rec := range recs {
			target := strings.TrimSuffix(rec.Target, ".")
			if target == "" {
				continue
			}
			out = append(out, resolvedServer{Addr: net.JoinHostPort(target, strconv.Itoa(int(rec.Port))), Host: hostHeader, SNI: host})
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// fetchWellKnown returns a well-known fetcher that GETs
// https://host/.well-known/matrix/server with client (whose dialer refuses
// forbidden addresses) and parses m.server.
func fetchWellKnown(client *http.Client) func(ctx context.Context, host string) (string, error) {
	return func(ctx context.Context, host string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/.well-known/matrix/server", nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%w: well-known: HTTP %d", ErrFederation, resp.StatusCode)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxWellKnownBytes))
		if err != nil {
			return "", err
		}
		return parseWellKnownServer(body)
	}
}

// parseWellKnownServer reads m.server from a /.well-known/matrix/server
// body (spec: Server-Server API, "GET /.well-known/matrix/server").
func parseWellKnownServer(body []byte) (string, error) {
	var wk struct {
		Server string `json:"m.server"`
	}
	if err := json.Unmarshal(body, &wk); err != nil {
		return "", fmt.Errorf("%w: well-known: %v", ErrFederation, err)
	}
	if wk.Server == "" {
		return "", errors.New("homeserver: well-known without m.server")
	}
	if _, _, err := splitServerName(wk.Server); err != nil {
		return "", err
	}
	return wk.Server, nil
}
