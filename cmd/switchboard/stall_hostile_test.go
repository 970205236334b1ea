package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// serveGuarded serves h behind stallGuard(stall) with the listener's
// http.Server settings on a loopback port.
func serveGuarded(t *testing.T, h http.Handler, stall time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(stallGuard(h, stall), slog.New(slog.DiscardHandler))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// dialSmall connects with a small receive buffer, so a client that does
// not read stops the server's writes soon.
func dialSmall(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// getOK checks that another client is served while a hostile one sits on
// the server.
func getOK(t *testing.T, addr string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/ok")
	if err != nil {
		t.Fatalf("another client: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("another client: %d %q", resp.StatusCode, body)
	}
}

// TestStallGuardNonReader: a client that asks for a big answer and never
// reads it makes the handler's write fail once it has stalled, so the
// handler ends and the connection closes; other clients are served all
// along.
func TestStallGuardNonReader(t *testing.T) {
	var writeErr atomic.Value
	done := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		defer close(done)
		chunk := make([]byte, 32<<10)
		for i := 0; i < 4096; i++ { // 128 MiB, far past any socket buffer
			if _, err := w.Write(chunk); err != nil {
				writeErr.Store(err)
				return
			}
		}
	})
	addr := serveGuarded(t, h, 300*time.Millisecond)
	c := dialSmall(t, addr)
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	getOK(t, addr)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the handler is still writing to a client that does not read")
	}
	var ne net.Error
	if err, _ := writeErr.Load().(error); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("write error %v, want a timeout", err)
	}
	getOK(t, addr)
}

// TestStallGuardSlowBody: a body that stops arriving ends in a read
// timeout for the handler (it answers and the connection closes), not a
// goroutine held forever.
func TestStallGuardSlowBody(t *testing.T) {
	readErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		_, err := io.ReadAll(r.Body)
		readErr <- err
		http.Error(w, "slow body", http.StatusRequestTimeout)
	})
	addr := serveGuarded(t, h, 300*time.Millisecond)
	c := dialSmall(t, addr)
	if _, err := io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab"); err != nil {
		t.Fatal(err)
	}
	getOK(t, addr)
	select {
	case err := <-readErr:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("body read error %v, want a timeout", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the handler is still waiting for a body that stopped")
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("the connection was not closed: %v", err)
	}
}

// TestStallGuardLongPoll: an answer that comes after several stall
// periods (a /sync long-poll) and a slow POST handler after its body are
// not cut; keep-alive reuse of the connection works after them.
func TestStallGuardLongPoll(t *testing.T) {
	const stall = 100 * time.Millisecond
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select { // a long-poll: nothing to say for a while
		case <-time.After(5 * stall):
		case <-r.Context().Done():
			http.Error(w, "cancelled", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%s:%d", r.Method, len(body))
	})
	addr := serveGuarded(t, h, stall)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for i, want := range []string{"GET:0", "POST:5", "GET:0"} {
		var resp *http.Response
		var err error
		if strings.HasPrefix(want, "POST") {
			resp, err = c.Post("http://"+addr+"/x", "text/plain", strings.NewReader("hello"))
		} else {
			resp, err = c.Get("http://" + addr + "/x")
		}
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != want {
			t.Fatalf("request %d: %d %q, want %q", i, resp.StatusCode, got, want)
		}
	}
}

// TestHeaderLimits: headers past MaxHeaderBytes get 431 and other clients
// are served. (Headers trickled past ReadHeaderTimeout, 10 s, are tested
// against the binary in loadtest/soak.)
func TestHeaderLimits(t *testing.T) {
	addr := serveGuarded(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), time.Second)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	big := strings.Repeat("a", 128<<10)
	go func() { _, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+big+"\r\n\r\n") }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
	getOK(t, addr)
}
