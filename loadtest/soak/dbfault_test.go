package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/loadtest/mxclient"
)

// cutProxy forwards TCP to a target until cut: then it closes every
// connection it carries and every new one at once, as a database that
// went away would look to its clients, until restored.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, src)
			delete(p.conns, dst)
			p.mu.Unlock()
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

// TestDatabaseOutageBinary cuts the PostgreSQL connection of a running
// server for a while: writes meanwhile answer 503 with Retry-After (no
// acknowledgement), the server recovers by itself once the database is
// back, and every message it acknowledged, before and after, is there.
// It runs where SWITCHBOARD_TEST_POSTGRES is set, as the storage tests'
// PostgreSQL legs do.
func TestDatabaseOutageBinary(t *testing.T) {
	if os.Getenv(storagetest.EnvPostgres) == "" {
		t.Skipf("%s is not set (PostgreSQL legs run under make test)", storagetest.EnvPostgres)
	}
	bin := binary(t)
	dsn := storagetest.NewPostgresDB(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := startServer(ctx, bin, t.TempDir(), u.String(), filepath.Join(t.TempDir(), "server.log"), "warn")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.proc.Kill()
	hcs := newHTTPClients()
	defer hcs.close()
	cli := &client{mxclient.Client{Base: srv.proc.ClientURL(), HC: hcs.hc}}
	if err := cli.Register(ctx, "dbfault", "dbfault password"); err != nil {
		t.Fatal(err)
	}
	room, err := cli.CreateRoom(ctx, "outage")
	if err != nil {
		t.Fatal(err)
	}
	var acked []string
	send := func(txn string) (string, error) {
		return cli.sendEvent(ctx, room, "m.room.message", txn, map[string]string{"msgtype": "m.text", "body": txn})
	}
	for i := 0; i < 10; i++ {
		ev, err := send(fmt.Sprintf("before%d", i))
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, ev)
	}

	proxy.setCut(true)
	// While the database is away, a write answers 503 with Retry-After
	// and M_UNKNOWN, and is not acknowledged.
	for i := 0; i < 5; i++ {
		body := strings.NewReader(`{"msgtype":"m.text","body":"during"}`)
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, cli.Base+mxclient.ClientAPI+"/rooms/"+url.PathEscape(room)+
			"/send/m.room.message/"+fmt.Sprintf("during%d", i), body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+cli.Token)
		resp, err := cli.HC.Do(req)
		if err != nil {
			t.Fatalf("send during the outage: %v", err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(string(data), `"M_UNKNOWN"`) {
			t.Errorf("send during the outage: %d Retry-After %q %s, want 503 with Retry-After",
				resp.StatusCode, resp.Header.Get("Retry-After"), mxclient.Truncate(string(data), 200))
		}
	}
	proxy.setCut(false)

	// Recovery without a restart.
	var ev string
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		if ev, err = send(fmt.Sprintf("after%d", i)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful send within 60 s of the database coming back: %v", err)
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	acked = append(acked, ev)

	// Nothing acknowledged was lost.
	seen := map[string]bool{}
	r, err := cli.sync(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range r.Rooms.Join[room].Timeline.Events {
		seen[e.EventID] = true
	}
	for _, id := range acked {
		if !seen[id] {
			t.Errorf("acknowledged event %s is missing after the outage", id)
		}
	}
	if err := srv.stop(); err != nil {
		t.Error(err)
	}
}
