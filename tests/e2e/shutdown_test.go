package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// syncMetric counts /sync requests that reached the handler; the test uses
// it to know the long-poll is being served before it sends SIGTERM.
const syncMetric = "switchboard_homeserver_sync_requests_total"

// TestSIGTERMEndsLongPollAndExitsZero: SIGTERM must wake a /sync that is
// long-polling (it answers 200 with a next_batch, instead of being cut off
// at the shutdown timeout) and the process must exit 0. The shutdown
// timeout and the long-poll are both far longer than the deadline, so
// passing means the server ended the poll itself.
func TestSIGTERMEndsLongPollAndExitsZero(t *testing.T) {
	const (
		deadline = 20 * time.Second
		poll     = 5 * time.Minute
	)
	p := startServer(t, t.TempDir(), "", "--shutdown-timeout", "2m")
	cli := newClient(t, p.ClientURL())
	register(t, cli, "bob", "correct horse battery")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"}); err != nil {
		t.Fatalf("createRoom: %v", err)
	}
	first, err := cli.FullSyncRequest(ctx, mautrix.ReqSync{})
	if err != nil {
		t.Fatalf("initial /sync: %v", err)
	}
	before := metricValue(t, p, syncMetric)

	type result struct {
		resp *mautrix.RespSync
		err  error
		took time.Duration
	}
	res := make(chan result, 1)
	var sent time.Time
	go func() {
		start := time.Now()
		resp, err := cli.FullSyncRequest(ctx, mautrix.ReqSync{Since: first.NextBatch, Timeout: int(poll.Milliseconds())})
		res <- result{resp, err, time.Since(start)}
	}()
	testkit.Eventually(t, 30*time.Second, "the long-poll /sync to reach the server", func() bool {
		select {
		case r := <-res:
			t.Fatalf("/sync returned before SIGTERM (after %s): %+v, %v", r.took, r.resp, r.err)
		default:
		}
		return metricValue(t, p, syncMetric) > before
	})
	sent = time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("long-poll /sync after SIGTERM: %v", r.err)
		}
		if r.resp.NextBatch == "" {
			t.Errorf("long-poll /sync after SIGTERM: no next_batch")
		}
		t.Logf("/sync answered %s after SIGTERM", time.Since(sent).Round(time.Millisecond))
	case <-time.After(deadline):
		t.Fatalf("long-poll /sync still open %s after SIGTERM", deadline)
	}
	code, err := p.Wait(deadline)
	if err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}
	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
}

// metricValue reads one unlabelled counter or gauge from /metrics; a
// missing metric fails the test.
func metricValue(t *testing.T, p *Process, name string) float64 {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get(p.MetricsURL() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	v, err := findMetric(bufio.NewScanner(resp.Body), name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// findMetric scans Prometheus text exposition for "name value".
func findMetric(sc *bufio.Scanner, name string) (float64, error) {
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == name {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("metric %s not in /metrics", name)
}
