package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/loadtest/mxclient"
)

// Scale of the hostile-client test. 10,000 idle connections need that
// many file descriptors in this process and in the server (Go raises the
// soft limit to the hard one at start); where the hard limit is lower the
// test uses what it allows and says so.
const (
	idleConns      = 10000
	slowlorisConns = 100
	nonReaders     = 5
	// fdMargin is what the test and the server need besides the idle
	// connections (the other hostile clients, the database, listeners).
	fdMargin = 400
)

// idleConnsAllowed is idleConns, or less when RLIMIT_NOFILE is lower.
func idleConnsAllowed(t *testing.T) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= idleConns+fdMargin {
		return idleConns
	}
	n := int(lim.Cur) - fdMargin
	if n < 1000 {
		t.Fatalf("RLIMIT_NOFILE is %d: the hostile-client test needs at least %d (ulimit -n)", lim.Cur, 1000+fdMargin)
	}
	t.Logf("RLIMIT_NOFILE is %d: %d idle connections instead of %d (raise ulimit -Hn for the full test)", lim.Cur, n, idleConns)
	return n
}

// dialRcvbuf connects with a small receive buffer, so a client that does
// not read fills up quickly.
func dialRcvbuf(addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	return d.Dial("tcp", addr)
}

// closedByServer reports whether the server has closed c (EOF or reset)
// within wait; any bytes it sends first are returned too.
func closedByServer(c net.Conn, wait time.Duration) (bool, string) {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	data, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false, string(data)
	}
	return true, string(data)
}

// TestHostileClientsBinary runs the real binary while, at once, 10,000
// connections sit idle without a request, 100 clients trickle their
// headers a byte every half second (slowloris), 5 clients pipeline big
// /sync requests and never read the answers, one sends a 128 KiB header
// and one an 8 MiB body. Each hostile client gets a timeout or a clear
// error (431, 413 M_TOO_LARGE, the connection closed by the server) and a
// normal user's sends and syncs succeed throughout; afterwards the
// server's goroutines return to where they started.
func TestHostileClientsBinary(t *testing.T) {
	bin := binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	srv, err := startServer(ctx, bin, t.TempDir(), "", filepath.Join(t.TempDir(), "server.log"), "warn")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.proc.Kill()
	addr := srv.proc.Addrs.Client
	hcs := newHTTPClients()
	defer hcs.close()
	good := &client{mxclient.Client{Base: srv.proc.ClientURL(), HC: hcs.hc}}
	if err := good.Register(ctx, "good", "good password"); err != nil {
		t.Fatal(err)
	}
	room, err := good.CreateRoom(ctx, "hostile")
	if err != nil {
		t.Fatal(err)
	}
	// A timeline big enough that an initial /sync answer is hundreds of KiB.
	pad := strings.Repeat("x", 2000)
	for i := 0; i < 200; i++ {
		if _, err := good.sendEvent(ctx, room, "m.room.message", fmt.Sprintf("pad%d", i),
			map[string]string{"msgtype": "m.text", "body": pad}); err != nil {
			t.Fatal(err)
		}
	}
	quiet := goodRoundTrips(ctx, t, good, room, "quiet")
	mhc := newHTTPClients()
	defer mhc.close()
	goroutines := func() float64 {
		v, err := scrape(ctx, mhc.hc, srv.proc.MetricsURL()+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		return v[metricIndex("goroutines")]
	}
	hcs.close()
	start := goroutines()

	var conns []net.Conn
	var mu sync.Mutex
	keep := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	// Idle connections: never a byte.
	var idle []net.Conn
	nIdle := idleConnsAllowed(t)
	for i := 0; i < nIdle; i++ {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		keep(c)
		idle = append(idle, c)
	}

	// Slowloris: a request line, then a header byte every 500 ms forever.
	slowCtx, stopSlow := context.WithCancel(ctx)
	defer stopSlow()
	var slow []net.Conn
	for i := 0; i < slowlorisConns; i++ {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		keep(c)
		slow = append(slow, c)
		go func() {
			if _, err := io.WriteString(c, "GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
				return
			}
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-slowCtx.Done():
					return
				case <-tick.C:
					if _, err := c.Write([]byte("a")); err != nil {
						return
					}
				}
			}
		}()
	}

	// Clients that pipeline big /sync answers and never read them.
	fq := url.Values{"filter": {`{"room":{"timeline":{"limit":500}}}`}, "timeout": {"0"}}
	for i := 0; i < nonReaders; i++ {
		c, err := dialRcvbuf(addr)
		if err != nil {
			t.Fatal(err)
		}
		keep(c)
		var b strings.Builder
		for j := 0; j < 10; j++ {
			fmt.Fprintf(&b, "GET %s/sync?%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", mxclient.ClientAPI, fq.Encode(), good.Token)
		}
		go func() { _, _ = io.WriteString(c, b.String()) }()
	}

	// Oversized header: 431.
	func() {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		go func() {
			_, _ = io.WriteString(c, "GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 128<<10)+"\r\n\r\n")
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("oversized header: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("oversized header: %d, want 431", resp.StatusCode)
		}
	}()

	// Oversized body: 413 M_TOO_LARGE.
	big := map[string]string{"msgtype": "m.text", "body": strings.Repeat("y", 8<<20)}
	if _, err := good.sendEvent(ctx, room, "m.room.message", "big", big); err == nil {
		t.Error("an 8 MiB event body was accepted")
	} else if ae, ok := err.(*mxclient.APIError); !ok || ae.Status != http.StatusRequestEntityTooLarge || !strings.Contains(ae.Body, "M_TOO_LARGE") {
		t.Errorf("oversized body: %v, want 413 M_TOO_LARGE", err)
	}

	// The normal user keeps being served, and sees its own messages.
	during := goodRoundTrips(ctx, t, good, room, "during")
	t.Logf("a normal user's send-to-sync with %d idle, %d slowloris and %d non-reading connections: %s (quiet: %s)",
		nIdle, slowlorisConns, nonReaders, durationsSummary(during), durationsSummary(quiet))

	// The server times out idle and slowloris connections
	// (ReadHeaderTimeout, 10 s) without answering them.
	for name, cs := range map[string][]net.Conn{"idle": idle, "slowloris": slow} {
		for i, c := range cs {
			closed, data := closedByServer(c, 60*time.Second)
			if !closed {
				t.Fatalf("%s connection %d still open after 60 s", name, i)
			}
			if strings.Contains(data, "200 OK") {
				t.Fatalf("%s connection %d was answered: %q", name, i, mxclient.Truncate(data, 200))
			}
		}
	}
	stopSlow()

	// All hostile clients gone: the server's goroutines come back.
	for _, c := range conns {
		c.Close()
	}
	hcs.close()
	deadline := time.Now().Add(90 * time.Second)
	for g := goroutines(); g > start+10; g = goroutines() {
		if time.Now().After(deadline) {
			t.Fatalf("server goroutines %v after the hostile clients left, %v before", g, start)
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	if err := srv.stop(); err != nil {
		t.Errorf("%v (log %s)", err, filepath.Base(srv.log.Name()))
	}
}

// goodRoundTrips sends 10 messages as a normal user and waits for each in
// its own /sync, failing on any error; it returns each send-to-sync time
// (for the log: timings are not pass/fail on a shared machine).
func goodRoundTrips(ctx context.Context, t *testing.T, good *client, room, tag string) []time.Duration {
	t.Helper()
	r, err := good.sync(ctx, "", 0)
	if err != nil {
		t.Fatalf("good user's sync (%s): %v", tag, err)
	}
	since := r.NextBatch
	var out []time.Duration
	for i := 0; i < 10; i++ {
		start := time.Now()
		ev, err := good.sendEvent(ctx, room, "m.room.message", fmt.Sprintf("good-%s%d", tag, i), map[string]string{"msgtype": "m.text", "body": "still here"})
		if err != nil {
			t.Fatalf("good user's send %d (%s): %v", i, tag, err)
		}
		found := false
		for !found {
			r, err := good.sync(ctx, since, 5000)
			if err != nil {
				t.Fatalf("good user's sync %d (%s): %v", i, tag, err)
			}
			since = r.NextBatch
			for _, e := range r.Rooms.Join[room].Timeline.Events {
				found = found || e.EventID == ev
			}
		}
		out = append(out, time.Since(start))
	}
	return out
}

// durationsSummary is "median X, max Y" of ds.
func durationsSummary(ds []time.Duration) string {
	s := append([]time.Duration(nil), ds...)
	slices.Sort(s)
	return fmt.Sprintf("median %s, max %s", s[len(s)/2].Round(100*time.Microsecond), s[len(s)-1].Round(100*time.Microsecond))
}
