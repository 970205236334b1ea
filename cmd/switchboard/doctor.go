package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pion/stun/v4"
)

// doctor runs `switchboard doctor`: it reads the configuration as serve
// does (file, environment, the same flags) and checks, one line each, what
// failed self-hosted call servers most often get wrong: the public IP, every
// listener, the TURN relay end to end, federation (server name resolution,
// certificate, signing key), the client well-known document, the database
// and the clock. It returns ErrDoctor (exit 1) when a check found a problem
// that a user would hit.
func (a *app) doctor(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("switchboard doctor", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	var configPath, clockPeer string
	var dev bool
	var set []setting
	fs.StringVar(&configPath, "config", a.getenv(envPrefix+"CONFIG"), "YAML configuration file (env SWITCHBOARD_CONFIG)")
	fs.BoolVar(&dev, "dev", false, "check a server started with serve --dev (self-signed certificates are expected)")
	fs.StringVar(&clockPeer, "clock-peer", "matrix.org", "Matrix server whose clock (HTTP Date) this machine's is compared with; empty skips")
	addOptionFlags(fs, &set)
	fs.Usage = func() {
		fmt.Fprint(a.stderr, "Usage: switchboard doctor [--config FILE | --dev] [serve's flags]\n\n"+
			"Checks a running server the way its users meet it, one line per check.\n"+
			"Give it the configuration (and flags) serve runs with. Exits 1 when a check fails.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: doctor takes no arguments, got %q", ErrUsage, fs.Args())
	}
	env := a.doctorEnv
	if env == nil {
		env = &doctorEnv{}
	}
	d := &doctorRun{out: a.stdout, env: env.withDefaults(), dev: dev}
	cfg := defaultConfig()
	if dev {
		cfg = devConfig()
	}
	err := layerConfig(&cfg, configPath, a.getenv, set)
	if err == nil {
		cfg.resolvePaths()
		err = cfg.Validate()
	}
	where := "defaults, environment and flags"
	if configPath != "" {
		where = configPath
	}
	if err != nil {
		d.problem("config", fmt.Sprintf("%s: %v", where, err), "correct the setting named above; `switchboard serve` refuses to start with it too")
		return d.result()
	}
	d.ok("config", where+" is valid")
	d.cfg = &cfg

	d.checkPublicIP(ctx)
	d.checkListeners(ctx)
	d.checkTURN(ctx)
	d.checkFederation(ctx)
	d.checkWellKnownClient(ctx)
	d.checkDatabase(ctx)
	d.checkClock(ctx, clockPeer)
	return d.result()
}

// doctorEnv is what doctor takes from the outside world beyond the
// configuration; tests replace it to resolve without public DNS.
type doctorEnv struct {
	// roots verifies certificates. Default: the system's roots.
	roots *x509.CertPool
	// httpsPort is the port of https://host/.well-known/... (default 443).
	httpsPort int
	// lookupSRV is net.Resolver.LookupSRV. Default: the system resolver.
	lookupSRV func(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
	// timeout bounds each network step. Default 5 s.
	timeout time.Duration
}

func (e *doctorEnv) withDefaults() doctorEnv {
	out := *e
	if out.httpsPort == 0 {
		out.httpsPort = 443
	}
	if out.lookupSRV == nil {
		out.lookupSRV = net.DefaultResolver.LookupSRV
	}
	if out.timeout == 0 {
		out.timeout = 5 * time.Second
	}
	return out
}

// doctorRun is one run of the checks and what they found.
type doctorRun struct {
	out      io.Writer
	env      doctorEnv
	dev      bool
	cfg      *Config
	problems []string
}

func (d *doctorRun) ok(name, detail string) {
	fmt.Fprintf(d.out, "ok       %-20s %s\n", name, detail)
}

// note is a check that could not be made, or a finding that is not a
// fault; it does not fail the run.
func (d *doctorRun) note(name, detail string) {
	fmt.Fprintf(d.out, "note     %-20s %s\n", name, detail)
}

// problem is something a user would hit; fix says what to do about it.
func (d *doctorRun) problem(name, detail, fix string) {
	fmt.Fprintf(d.out, "PROBLEM  %-20s %s\n", name, detail)
	if fix != "" {
		fmt.Fprintf(d.out, "         %-20s fix: %s\n", "", fix)
	}
	d.problems = append(d.problems, name)
}

func (d *doctorRun) result() error {
	if len(d.problems) == 0 {
		fmt.Fprintln(d.out, "\nNo problems found.")
		return nil
	}
	fmt.Fprintf(d.out, "\n%d problem(s): %s\n", len(d.problems), strings.Join(d.problems, ", "))
	return fmt.Errorf("%w: %s", ErrDoctor, strings.Join(d.problems, ", "))
}

// localAddr is where this machine reaches a listen address: a wildcard
// host becomes 127.0.0.1.
func localAddr(listen string) string { return displayAddr(listen) }

// checkPublicIP: public_ip must be this machine's, or lead back to it
// (1:1 NAT); SFU candidates and TURN relayed addresses carry it.
func (d *doctorRun) checkPublicIP(ctx context.Context) {
	const name = "public_ip"
	ipText := d.cfg.PublicIP
	if ipText == "" {
		d.note(name, "not set: the SFU and TURN advertise an address of this machine's interfaces; set public_ip if it is behind NAT")
		return
	}
	ip, err := netip.ParseAddr(ipText)
	if err != nil {
		d.problem(name, fmt.Sprintf("%q is not an IP address", ipText), "set public_ip to this machine's public IPv4 address")
		return
	}
	if iface, ok := interfaceWith(ip); ok {
		d.ok(name, fmt.Sprintf("%s is on interface %s", ip, iface))
		return
	}
	if d.loopsBack(ctx, ip) {
		d.ok(name, fmt.Sprintf("%s is not on an interface, but a connection to it came back to this machine (1:1 NAT)", ip))
		return
	}
	d.problem(name, fmt.Sprintf("%s is not an address of this machine, and a connection to it did not come back here: clients would send calls' media to another machine", ip),
		"set public_ip to the address the Internet reaches this machine at (a cloud VM's public or elastic IP); behind a NAT without hairpinning, check from outside")
}

// interfaceWith names the interface that has ip.
func interfaceWith(ip netip.Addr) (string, bool) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", false
	}
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == ip.Unmap() {
				return ifc.Name, true
			}
		}
	}
	return "", false
}

// loopsBack reports whether a TCP connection to ip reaches a listener of
// this process: it listens on all addresses, dials ip on that port and
// looks for a random token.
func (d *doctorRun) loopsBack(ctx context.Context, ip netip.Addr) bool {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		return false
	}
	defer ln.Close()
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return false
	}
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(d.env.timeout))
		buf := make([]byte, len(token))
		if _, err := io.ReadFull(c, buf); err != nil {
			got <- nil
			return
		}
		got <- buf
	}()
	ctx, cancel := context.WithTimeout(ctx, d.env.timeout)
	defer cancel()
	port := ln.Addr().(*net.TCPAddr).Port
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", netip.AddrPortFrom(ip, uint16(port)).String())
	if err != nil {
		return false
	}
	defer c.Close()
	if _, err := c.Write(token); err != nil {
		return false
	}
	select {
	case b := <-got:
		return string(b) == string(token)
	case <-ctx.Done():
		return false
	}
}

// checkListeners connects to every listener the configuration turns on,
// speaking each one's protocol far enough to know it is ours.
func (d *doctorRun) checkListeners(ctx context.Context) {
	c := d.cfg
	fix := func(key string) string {
		return "start `switchboard serve` with this configuration, or correct " + key + " (a firewall or another program may also hold the port)"
	}
	// Client API and metrics: /health answers 200.
	for _, l := range []struct{ key, addr string }{{"client.listen", c.Client.Listen}, {"metrics.listen", c.Metrics.Listen}} {
		if l.addr == "" {
			continue
		}
		url := httpURL(l.addr, l.key == "client.listen" && c.Client.TLSCert != "") + "/health"
		if err := d.httpGet200(ctx, url); err != nil {
			d.problem(l.key, fmt.Sprintf("%s: %v", url, err), fix(l.key))
		} else {
			d.ok(l.key, url+" answers")
		}
	}
	if c.Federation.Listen != "" {
		addr := localAddr(c.Federation.Listen)
		if err := d.tlsHandshake(ctx, addr); err != nil {
			d.problem("federation.listen", fmt.Sprintf("TLS to %s: %v", addr, err), fix("federation.listen"))
		} else {
			d.ok("federation.listen", "TLS on "+addr+" answers")
		}
	}
	if c.TURN.Enabled {
		addr := localAddr(c.TURN.Listen)
		for _, network := range []string{"udp", "tcp"} {
			key := "turn.listen (" + network + ")"
			if err := d.stunBinding(ctx, network, addr, false); err != nil {
				d.problem(key, fmt.Sprintf("STUN Binding to %s %s: %v", network, addr, err), fix("turn.listen"))
			} else {
				d.ok(key, "STUN Binding on "+network+" "+addr+" answered")
			}
		}
		if c.TURN.TLSListen != "" {
			addr := localAddr(c.TURN.TLSListen)
			if err := d.stunBinding(ctx, "tcp", addr, true); err != nil {
				d.problem("turn.tls_listen", fmt.Sprintf("STUN Binding over TLS to %s: %v", addr, err), fix("turn.tls_listen"))
			} else {
				d.ok("turn.tls_listen", "STUN Binding over TLS on "+addr+" answered")
			}
		}
	}
	if c.SFU.Enabled {
		// ICE on the media port answers only checks with a session's
		// credentials: all this can see is that the port is taken.
		addr := localAddr(c.SFU.UDPListen)
		if pc, err := net.ListenPacket("udp", c.SFU.UDPListen); err == nil {
			pc.Close()
			d.problem("sfu.udp_listen", "nothing holds udp "+addr+": group calls would have no media", fix("sfu.udp_listen"))
		} else {
			d.ok("sfu.udp_listen", "udp "+addr+" is bound")
		}
		if c.SFU.TCPListen != "" {
			addr := localAddr(c.SFU.TCPListen)
			conn, err := (&net.Dialer{Timeout: d.env.timeout}).DialContext(ctx, "tcp", addr)
			if err != nil {
				d.problem("sfu.tcp_listen", fmt.Sprintf("ICE-TCP %s: %v", addr, err), fix("sfu.tcp_listen"))
			} else {
				conn.Close()
				d.ok("sfu.tcp_listen", "ICE-TCP "+addr+" accepts connections")
			}
		}
	}
}

// httpGet200 GETs url (any certificate: this is the local listener) and
// wants 200.
func (d *doctorRun) httpGet200(ctx context.Context, url string) error {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // reachability of a local listener
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, d.env.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

// tlsHandshake completes a TLS handshake with addr, not verifying the
// certificate (the federation checks do that for the public name).
func (d *doctorRun) tlsHandshake(ctx context.Context, addr string) error {
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: d.env.timeout}, Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // reachability only
	ctx, cancel := context.WithTimeout(ctx, d.env.timeout)
	defer cancel()
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// stunBinding sends a STUN Binding request (RFC 8489 §6) to addr over udp,
// tcp or (overTLS) TLS and waits for a success response.
func (d *doctorRun) stunBinding(ctx context.Context, network, addr string, overTLS bool) error {
	ctx, cancel := context.WithTimeout(ctx, d.env.timeout)
	defer cancel()
	var conn net.Conn
	var err error
	if overTLS {
		conn, err = (&tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}}).DialContext(ctx, "tcp", addr) //nolint:gosec // reachability only
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	// UDP may lose the request: send it again every 500 ms.
	for {
		if _, err := conn.Write(req.Raw); err != nil {
			return err
		}
		if network == "udp" {
			_ = conn.SetReadDeadline(minTime(deadline, time.Now().Add(500*time.Millisecond)))
		}
		buf := make([]byte, 1500)
		n, err := readSTUN(conn, buf, network != "udp")
		if err != nil {
			var ne net.Error
			if network == "udp" && errors.As(err, &ne) && ne.Timeout() && time.Now().Before(deadline) {
				continue
			}
			if errors.As(err, &ne) && ne.Timeout() {
				return errors.New("no answer")
			}
			return err
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if err := res.Decode(); err != nil {
			return fmt.Errorf("not a STUN answer: %w", err)
		}
		if res.TransactionID != req.TransactionID || res.Type != stun.BindingSuccess {
			return fmt.Errorf("unexpected STUN answer %s", res.Type)
		}
		return nil
	}
}

// readSTUN reads one STUN message: a datagram, or on a stream the 20-byte
// header and then its length (RFC 8489 §5, §6.2.2).
func readSTUN(conn net.Conn, buf []byte, stream bool) (int, error) {
	if !stream {
		return conn.Read(buf)
	}
	if _, err := io.ReadFull(conn, buf[:20]); err != nil {
		return 0, err
	}
	n := int(buf[2])<<8 | int(buf[3])
	if 20+n > len(buf) {
		return 0, errors.New("STUN message too long")
	}
	if _, err := io.ReadFull(conn, buf[20:20+n]); err != nil {
		return 0, err
	}
	return 20 + n, nil
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// checkDatabase opens the database read-only and reads its schema version:
// a database serve has never run on has none.
func (d *doctorRun) checkDatabase(ctx context.Context) {
	const name = "database"
	dsn := d.cfg.Database
	var db *sql.DB
	var err error
	shown := dsn
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		shown = redactURL(dsn)
		db, err = sql.Open("pgx", dsn)
	} else {
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "file:")
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		if _, statErr := os.Stat(path); statErr != nil {
			d.problem(name, fmt.Sprintf("no SQLite database at %s", path), "start `switchboard serve` with this configuration once (it creates and migrates the database), or correct database / data_dir")
			return
		}
		abs, _ := filepath.Abs(path)
		db, err = sql.Open("sqlite", "file:"+abs+"?mode=ro&_pragma=busy_timeout(5000)")
	}
	if err != nil {
		d.problem(name, fmt.Sprintf("%s: %v", shown, err), "correct database")
		return
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, d.env.timeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		d.problem(name, fmt.Sprintf("%s does not answer: %v", shown, err), "start the database server, or correct database (user, password, host)")
		return
	}
	var version int
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&version); err != nil || version == 0 {
		d.problem(name, fmt.Sprintf("%s has no Switchboard schema", shown), "start `switchboard serve` with this configuration once: it migrates the database")
		return
	}
	d.ok(name, fmt.Sprintf("%s answers, schema version %d", shown, version))
}
