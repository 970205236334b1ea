package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
)

// maxDoctorBody bounds what doctor reads of any answer.
const maxDoctorBody = 256 << 10

// fedTarget is where other servers send federation requests for a server
// name, and the name its certificate must be valid for.
type fedTarget struct {
	addr     string // host:port to connect to
	certHost string // the name the certificate must match ("" for an IP literal)
	how      string // how it was found, for the report
}

// resolveServerName follows the spec's order (Server-Server API,
// "Resolving server names"): an IP literal or an explicit port is used as
// it is; else https://<host>/.well-known/matrix/server may delegate (the
// delegated name then goes through the same steps without well-known);
// else SRV _matrix-fed._tcp (then the deprecated _matrix._tcp); else port
// 8448.
func (d *doctorRun) resolveServerName(ctx context.Context, name string) (fedTarget, error) {
	host, port, err := splitServerName(name)
	if err != nil {
		return fedTarget{}, err
	}
	if net.ParseIP(strings.Trim(host, "[]")) != nil {
		if port == 0 {
			port = 8448
		}
		return fedTarget{addr: net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port)), how: name + " is an IP literal"}, nil
	}
	if port != 0 {
		return fedTarget{addr: net.JoinHostPort(host, strconv.Itoa(port)), certHost: host, how: name + " names its port"}, nil
	}
	wkURL := d.httpsURL(host, "/.well-known/matrix/server")
	var wk struct {
		Server string `json:"m.server"`
	}
	if err := d.getJSON(ctx, wkURL, true, &wk); err == nil && wk.Server != "" {
		dHost, dPort, err := splitServerName(wk.Server)
		if err != nil {
			return fedTarget{}, fmt.Errorf("%s delegates to %q, which is not a server name: %w", wkURL, wk.Server, err)
		}
		via := wkURL + " delegates to " + wk.Server
		if net.ParseIP(strings.Trim(dHost, "[]")) != nil || dPort != 0 {
			if dPort == 0 {
				dPort = 8448
			}
			t := fedTarget{addr: net.JoinHostPort(strings.Trim(dHost, "[]"), strconv.Itoa(dPort)), certHost: dHost, how: via}
			if net.ParseIP(strings.Trim(dHost, "[]")) != nil {
				t.certHost = ""
			}
			return t, nil
		}
		if t, ok := d.srv(ctx, dHost); ok {
			t.how = via + ", then " + t.how
			return t, nil
		}
		return fedTarget{addr: net.JoinHostPort(dHost, "8448"), certHost: dHost, how: via + " (no SRV record: port 8448)"}, nil
	}
	if t, ok := d.srv(ctx, host); ok {
		t.how = "no " + wkURL + "; " + t.how
		return t, nil
	}
	return fedTarget{addr: net.JoinHostPort(host, "8448"), certHost: host, how: "no " + wkURL + " and no SRV record: port 8448"}, nil
}

// srv looks up _matrix-fed._tcp.host, then _matrix._tcp.host; the
// certificate must still be valid for host.
func (d *doctorRun) srv(ctx context.Context, host string) (fedTarget, bool) {
	for _, service := range []string{"matrix-fed", "matrix"} {
		ctx, cancel := context.WithTimeout(ctx, d.env.timeout)
		_, recs, err := d.env.lookupSRV(ctx, service, "tcp", host)
		cancel()
		if err != nil || len(recs) == 0 {
			continue
		}
		sort.SliceStable(recs, func(i, j int) bool { return recs[i].Priority < recs[j].Priority })
		r := recs[0]
		target := strings.TrimSuffix(r.Target, ".")
		return fedTarget{addr: net.JoinHostPort(target, strconv.Itoa(int(r.Port))), certHost: host,
			how: fmt.Sprintf("SRV _%s._tcp.%s points to %s:%d", service, host, target, r.Port)}, true
	}
	return fedTarget{}, false
}

// httpsURL is https://host/path, on env.httpsPort when that is not 443.
func (d *doctorRun) httpsURL(host, path string) string {
	if d.env.httpsPort != 443 {
		host = net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(d.env.httpsPort))
	}
	return "https://" + host + path
}

// checkFederation resolves our server name as another server would, then
// checks the certificate found there and that our signing key is served
// there and signed.
func (d *doctorRun) checkFederation(ctx context.Context) {
	c := d.cfg
	if c.Federation.Listen == "" {
		d.note("federation", "off (federation.listen is empty)")
		return
	}
	t, err := d.resolveServerName(ctx, c.ServerName)
	if err != nil {
		d.problem("federation name", err.Error(), "correct server_name or /.well-known/matrix/server")
		return
	}
	d.ok("federation name", fmt.Sprintf("%s: other servers connect to %s", t.how, t.addr))
	leaf, err := d.peerCert(ctx, t)
	if err != nil {
		d.problem("federation cert", fmt.Sprintf("cannot reach %s: %v", t.addr, err),
			fmt.Sprintf("make %s reach federation.listen (%s): DNS, port forwarding, firewall", t.addr, c.Federation.Listen))
		return
	}
	if d.checkCert(t, leaf) {
		d.checkServerKeys(ctx, t)
	}
}

// peerCert connects to t and returns the certificate it presents.
func (d *doctorRun) peerCert(ctx context.Context, t fedTarget) (*x509.Certificate, error) {
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: d.env.timeout}, Config: &tls.Config{ServerName: t.certHost, InsecureSkipVerify: true}} //nolint:gosec // verified by checkCert, step by step
	ctx, cancel := context.WithTimeout(ctx, d.env.timeout)
	defer cancel()
	conn, err := dialer.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	return certs[0], nil
}

// checkCert reports the certificate's dates, name and issuer, the way
// other servers judge it (spec: Server-Server API, "TLS": a certificate
// valid for the server name, signed by a trusted authority). It returns
// whether the certificate is good enough to go on.
func (d *doctorRun) checkCert(t fedTarget, leaf *x509.Certificate) bool {
	const name = "federation cert"
	now := time.Now()
	fix := "renew or replace federation.tls_cert: a certificate from a public CA (e.g. Let's Encrypt) for " + t.certHost
	switch {
	case now.After(leaf.NotAfter):
		d.problem(name, fmt.Sprintf("the certificate on %s expired on %s", t.addr, leaf.NotAfter.UTC().Format(time.DateOnly)), fix)
		return false
	case now.Before(leaf.NotBefore):
		d.problem(name, fmt.Sprintf("the certificate on %s is not valid before %s", t.addr, leaf.NotBefore.UTC().Format(time.RFC3339)), fix+" (or correct this machine's clock)")
		return false
	}
	host := t.certHost
	if host == "" {
		host, _, _ = net.SplitHostPort(t.addr)
	}
	if err := leaf.VerifyHostname(host); err != nil {
		d.problem(name, fmt.Sprintf("the certificate on %s is not valid for %s (it names %s)", t.addr, host, certNames(leaf)), fix)
		return false
	}
	_, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: d.env.roots, CurrentTime: now})
	var unknown x509.UnknownAuthorityError
	switch {
	case err == nil:
		d.ok(name, fmt.Sprintf("valid for %s until %s, issued by %s", host, leaf.NotAfter.UTC().Format(time.DateOnly), leaf.Issuer.CommonName))
	case errors.As(err, &unknown) && d.dev:
		d.ok(name, fmt.Sprintf("self-signed, as --dev makes it (valid for %s until %s); other servers accept it only with federation.skip_tls_verify", host, leaf.NotAfter.UTC().Format(time.DateOnly)))
	default:
		d.problem(name, fmt.Sprintf("other servers will not trust the certificate on %s: %v", t.addr, err), fix)
		return false
	}
	return true
}

func certNames(c *x509.Certificate) string {
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return c.Subject.CommonName
	}
	return strings.Join(names, ", ")
}

// serverKeys is GET /_matrix/key/v2/server (spec: Server-Server API,
// "Publishing Keys").
type serverKeys struct {
	ServerName   string `json:"server_name"`
	ValidUntilTS int64  `json:"valid_until_ts"`
	VerifyKeys   map[string]struct {
		Key string `json:"key"`
	} `json:"verify_keys"`
}

// checkServerKeys fetches our keys where other servers would and checks
// that our signing key is there and signed the answer.
func (d *doctorRun) checkServerKeys(ctx context.Context, t fedTarget) {
	const name = "federation keys"
	c := d.cfg
	data, err := os.ReadFile(c.SigningKeyFile)
	if err != nil {
		d.problem(name, "cannot read signing_key_file: "+err.Error(), "run doctor with the same data_dir as serve")
		return
	}
	key, err := parseSigningKey(data)
	if err != nil {
		d.problem(name, err.Error(), "correct signing_key_file")
		return
	}
	url := "https://" + t.addr + "/_matrix/key/v2/server"
	body, err := d.fetch(ctx, url, c.ServerName, false)
	if err != nil {
		d.problem(name, fmt.Sprintf("%s: %v", url, err), "federation.listen must serve the federation API at "+t.addr)
		return
	}
	var keys serverKeys
	if err := json.Unmarshal(body, &keys); err != nil {
		d.problem(name, fmt.Sprintf("%s: not a key document: %v", url, err), "something other than switchboard answers at "+t.addr)
		return
	}
	pub := key.Key.Public().(ed25519.PublicKey)
	want := base64.RawStdEncoding.EncodeToString(pub)
	served, ok := keys.VerifyKeys[key.ID()]
	switch {
	case keys.ServerName != c.ServerName:
		d.problem(name, fmt.Sprintf("%s answers for %q, not %q", t.addr, keys.ServerName, c.ServerName), "point the server name at this server")
	case !ok || strings.TrimRight(served.Key, "=") != want:
		d.problem(name, fmt.Sprintf("%s does not serve our key %s", t.addr, key.ID()), "serve and doctor must use the same signing_key_file; restart serve after replacing it")
	case gomatrixserverlib.VerifyJSON(c.ServerName, gomatrixserverlib.KeyID(key.ID()), pub, body) != nil:
		d.problem(name, fmt.Sprintf("the key document at %s is not signed by %s", t.addr, key.ID()), "restart serve with its signing_key_file")
	case time.UnixMilli(keys.ValidUntilTS).Before(time.Now()):
		d.problem(name, fmt.Sprintf("the key document's valid_until_ts %s has passed", time.UnixMilli(keys.ValidUntilTS).UTC().Format(time.RFC3339)), "check this machine's clock")
	default:
		d.ok(name, fmt.Sprintf("%s is served at %s and signs the key document", key.ID(), t.addr))
	}
}

// fetch GETs url with the given Host header and returns a 200 body.
// verify checks the certificate against the roots.
func (d *doctorRun) fetch(ctx context.Context, url, host string, verify bool) ([]byte, error) {
	tlsCfg := &tls.Config{RootCAs: d.env.roots, InsecureSkipVerify: !verify} //nolint:gosec // callers judge certificates in checkCert
	tr := &http.Transport{TLSClientConfig: tlsCfg, Proxy: nil}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, d.env.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDoctorBody))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	return body, nil
}

func (d *doctorRun) getJSON(ctx context.Context, url string, verify bool, out any) error {
	body, err := d.fetch(ctx, url, "", verify)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, out)
}

// clientWellKnown is /.well-known/matrix/client (spec: Client-Server API,
// "Well-known URIs"), with MSC4143's rtc_foci.
type clientWellKnown struct {
	Homeserver struct {
		BaseURL string `json:"base_url"`
	} `json:"m.homeserver"`
	RTCFoci []struct {
		Type              string `json:"type"`
		LiveKitServiceURL string `json:"livekit_service_url"`
	} `json:"org.matrix.msc4143.rtc_foci"`
}

// checkWellKnownClient checks the document our client listener serves
// and, outside --dev, the one clients fetch from the server name's host.
func (d *doctorRun) checkWellKnownClient(ctx context.Context) {
	const name = "well-known client"
	c := d.cfg
	local := httpURL(c.Client.Listen, c.Client.TLSCert != "")
	want := c.PublicBaseURL
	if want == "" && d.dev {
		want = local
	}
	if want == "" {
		d.problem(name, "public_base_url is not set: /.well-known/matrix/client names no homeserver, so clients cannot find the client API", "set public_base_url to the URL clients use, e.g. https://matrix.example.org")
		return
	}
	var wk clientWellKnown
	if err := d.getJSON(ctx, local+"/.well-known/matrix/client", false, &wk); err != nil {
		d.problem(name, fmt.Sprintf("%s/.well-known/matrix/client: %v", local, err), "start serve with this configuration")
		return
	}
	if strings.TrimRight(wk.Homeserver.BaseURL, "/") != strings.TrimRight(want, "/") {
		d.problem(name, fmt.Sprintf("the client listener names %q, want %q", wk.Homeserver.BaseURL, want), "restart serve after changing public_base_url")
		return
	}
	d.ok(name, fmt.Sprintf("the client listener names %s", want))
	for _, f := range wk.RTCFoci {
		if f.Type != "livekit" || f.LiveKitServiceURL == "" {
			d.problem("rtc_foci", fmt.Sprintf("focus %+v is not a livekit focus with a livekit_service_url (MSC4143)", f), "correct the MatrixRTC focus configuration")
			continue
		}
		// Any HTTP answer will do: the service's paths are POSTs.
		if _, err := d.fetch(ctx, f.LiveKitServiceURL, "", !d.dev); err != nil && !strings.HasPrefix(err.Error(), "HTTP ") {
			d.problem("rtc_foci", fmt.Sprintf("%s: %v", f.LiveKitServiceURL, err), "the MatrixRTC service URL must be reachable by clients")
			continue
		}
		d.ok("rtc_foci", "MatrixRTC focus "+f.LiveKitServiceURL+" answers")
	}
	if d.dev {
		d.note(name, "--dev: the public https://<server name>/.well-known/matrix/client is not checked")
		return
	}
	host, _, _ := splitServerName(c.ServerName)
	url := d.httpsURL(host, "/.well-known/matrix/client")
	var pub clientWellKnown
	if err := d.getJSON(ctx, url, true, &pub); err != nil {
		d.problem(name, fmt.Sprintf("%s: %v: clients signing in as @you:%s cannot discover the server", url, err, c.ServerName),
			"serve /.well-known/matrix/client at https://"+host+"/ (proxy that path to switchboard's client listener)")
		return
	}
	if strings.TrimRight(pub.Homeserver.BaseURL, "/") != strings.TrimRight(want, "/") {
		d.problem(name, fmt.Sprintf("%s names %q, but public_base_url is %q", url, pub.Homeserver.BaseURL, want), "make them agree")
		return
	}
	d.ok(name, url+" names "+want)
}

// maxClockSkew is how far this machine's clock may be from a peer's
// before signatures, key validity and TURN credentials go wrong.
const maxClockSkew = 30 * time.Second

// checkClock compares this machine's clock with the Date header of a peer
// Matrix server's federation version endpoint. Without a reachable peer it
// is skipped with a note.
func (d *doctorRun) checkClock(ctx context.Context, peer string) {
	const name = "clock"
	if peer == "" {
		d.note(name, "skipped (--clock-peer is empty)")
		return
	}
	t, err := d.resolveServerName(ctx, peer)
	if err != nil {
		d.note(name, fmt.Sprintf("skipped: cannot resolve %s: %v", peer, err))
		return
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: d.env.roots, ServerName: t.certHost}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, d.env.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+t.addr+"/_matrix/federation/v1/version", nil)
	if err != nil {
		d.note(name, "skipped: "+err.Error())
		return
	}
	req.Host = peer
	sent := time.Now()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		d.note(name, fmt.Sprintf("skipped: %s is not reachable from here (%v)", peer, err))
		return
	}
	resp.Body.Close()
	got := time.Now()
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		d.note(name, fmt.Sprintf("skipped: %s sent no Date header", peer))
		return
	}
	// Date has one-second resolution: compare with the middle of the
	// request, allowing a second.
	mid := sent.Add(got.Sub(sent) / 2)
	skew := mid.Sub(date)
	if skew < 0 {
		skew = -skew
	}
	if skew > maxClockSkew+time.Second {
		d.problem(name, fmt.Sprintf("this machine's clock is %s away from %s's", skew.Round(time.Second), peer),
			"run NTP (e.g. systemd-timesyncd or chrony): signatures and TURN credentials depend on the time")
		return
	}
	d.ok(name, fmt.Sprintf("within %s of %s", skew.Round(time.Second), peer))
}
