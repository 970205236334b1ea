package homeserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// logCapture is a slog handler that keeps every record (all levels).
type logCapture struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCapture) WithGroup(string) slog.Handler      { return l }

// find returns the records for which match is true.
func (l *logCapture) find(match func(slog.Record, map[string]any) bool) []slog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []slog.Record
	for _, r := range l.recs {
		attrs := map[string]any{}
		r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.Any(); return true })
		if match(r, attrs) {
			out = append(out, r)
		}
	}
	return out
}

// TestClientClosedSyncIsNotAnError closes /sync long-polls from the client
// side: the server logs each at debug with status 499 and never an ERROR
// or a 500 (issue 15, issue 17 item 5).
func TestClientClosedSyncIsNotAnError(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		logs := &logCapture{}
		ctx := testCtx(t)
		s, err := New(ctx, Config{
			ServerName: "test.local", Database: b.Open(t), Registration: RegistrationOpen, SigningKey: key, KeyID: "ed25519:test",
			RateLimit: RateLimitConfig{Disabled: true}, Federation: FederationConfig{Resolver: offlineResolver()},
		}, slog.New(logs), nil)
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(s.ClientHandler())
		t.Cleanup(func() { s.Shutdown(); hs.Close(); s.Close() })
		alice := (&testServer{Server: s, URL: hs.URL}).user(t, "alice")
		first, err := alice.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		const polls = 3
		for i := 0; i < polls; i++ {
			reqCtx, cancel := context.WithCancel(ctx)
			wrote := make(chan struct{})
			reqCtx = httptrace.WithClientTrace(reqCtx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(wrote) }})
			req, err := http.NewRequestWithContext(reqCtx, http.MethodGet,
				hs.URL+"/_matrix/client/v3/sync?timeout=30000&since="+url.QueryEscape(first.NextBatch), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+alice.AccessToken)
			done := make(chan error, 1)
			go func() {
				resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			select {
			case <-wrote:
			case err := <-done:
				t.Fatalf("the long-poll ended before it was cancelled: %v", err)
			}
			cancel()
			if err := <-done; err == nil {
				t.Fatal("the cancelled long-poll got an answer")
			}
		}
		closed := func(r slog.Record, a map[string]any) bool {
			return r.Message == "request" && a["path"] == "/_matrix/client/v3/sync" && a["status"] == int64(statusClientClosed)
		}
		deadline := time.Now().Add(30 * time.Second)
		for len(logs.find(closed)) < polls {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d closed long-polls logged with status %d", len(logs.find(closed)), polls, statusClientClosed)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, r := range logs.find(closed) {
			if r.Level != slog.LevelDebug {
				t.Fatalf("a closed long-poll logged at %v", r.Level)
			}
		}
		bad := logs.find(func(r slog.Record, a map[string]any) bool {
			return r.Level >= slog.LevelError || a["status"] == int64(http.StatusInternalServerError)
		})
		if len(bad) > 0 {
			t.Fatalf("closed long-polls logged as errors: %v", bad[0])
		}
	})
}
