package homeserver

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/clock"
)

// TestSyncTimeoutFakeClock drives a 30-second /sync long-poll to its end
// with a fake clock: the request waits on the clock's timer, answers only
// once the clock passes the timeout, and answers with nothing new.
func TestSyncTimeoutFakeClock(t *testing.T) {
	b := storagetest.Backends(t)[0]
	clk := clock.NewFake(time.Now())
	ts := newTestServer(t, b, func(c *Config) { c.Clock = clk })
	alice := ts.user(t, "alice")
	first := ts.do(t, http.MethodGet, "/_matrix/client/v3/sync", alice.AccessToken, nil)
	wantStatus(t, first, http.StatusOK, "")
	since, _ := first.Body["next_batch"].(string)
	if since == "" {
		t.Fatalf("initial sync without next_batch: %s", first.Raw)
	}
	pending := clk.Pending()

	type result struct {
		status int
		body   map[string]any
		err    error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(testCtx(t), http.MethodGet,
			ts.URL+"/_matrix/client/v3/sync?timeout=30000&since="+since, nil)
		req.Header.Set("Authorization", "Bearer "+alice.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		r := result{status: resp.StatusCode, err: err}
		_ = json.Unmarshal(raw, &r.body)
		done <- r
	}()

	// The request is waiting once its timer is on the clock.
	deadline := time.Now().Add(30 * time.Second)
	for clk.Pending() <= pending {
		if time.Now().After(deadline) {
			t.Fatal("the /sync long-poll never started its timer")
		}
		select {
		case r := <-done:
			t.Fatalf("/sync answered before its timeout: %+v", r)
		case <-time.After(5 * time.Millisecond):
		}
	}
	clk.Advance(29 * time.Second)
	select {
	case r := <-done:
		t.Fatalf("/sync answered 1 s before its timeout: %+v", r)
	default:
	}
	clk.Advance(time.Second)
	var r result
	select {
	case r = <-done:
	case <-testCtx(t).Done():
		t.Fatal("/sync did not answer after the clock passed its timeout")
	}
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("/sync: status %d, err %v", r.status, r.err)
	}
	if next, _ := r.body["next_batch"].(string); next != since {
		t.Fatalf("next_batch %q after a quiet timeout, want the since token %q", next, since)
	}
	if rooms, _ := r.body["rooms"].(map[string]any); len(rooms["join"].(map[string]any)) != 0 {
		t.Fatalf("rooms in a quiet timeout: %v", rooms)
	}
}
