package web

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandlerServesIndex(t *testing.T) {
	h := Handler()
	for _, path := range []string{"/", "/rooms/abc"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "<title>Switchboard</title>") {
			t.Errorf("GET %s: %d %q", path, rec.Code, rec.Body.String())
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/missing.js", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /missing.js: %d, want 404", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", rec.Code)
	}
}

// TestStaticReferencesResolve checks that every module import of the
// embedded scripts and every local file index.html loads is embedded and
// served with a type browsers accept for it (ES modules need a JavaScript
// MIME type), so a renamed file fails here rather than in a browser.
func TestStaticReferencesResolve(t *testing.T) {
	h := Handler()
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	index := get("/").Body.String()
	refs := regexp.MustCompile(`(?:src|href)="(/[^"]+)"`).FindAllStringSubmatch(index, -1)
	if len(refs) < 2 {
		t.Fatalf("index.html references %d local files, want the stylesheet and the app script", len(refs))
	}
	imports := regexp.MustCompile(`(?m)^import [^;]*? from "\./([^"]+)";`)
	seen := map[string]bool{}
	queue := []string{}
	for _, r := range refs {
		queue = append(queue, r[1])
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		rec := get(p)
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s: %d", p, rec.Code)
			continue
		}
		ct := rec.Header().Get("Content-Type")
		switch {
		case strings.HasSuffix(p, ".js") && !strings.HasPrefix(ct, "text/javascript"):
			t.Errorf("GET %s: Content-Type %q, want text/javascript", p, ct)
		case strings.HasSuffix(p, ".css") && !strings.HasPrefix(ct, "text/css"):
			t.Errorf("GET %s: Content-Type %q, want text/css", p, ct)
		}
		if strings.HasSuffix(p, ".js") {
			for _, m := range imports.FindAllStringSubmatch(rec.Body.String(), -1) {
				queue = append(queue, "/"+m[1])
			}
		}
	}
	for _, want := range []string{"/app.js", "/matrix.js", "/call.js", "/group.js", "/media.js", "/callview.js", "/style.css"} {
		if !seen[want] {
			t.Errorf("%s is not reachable from index.html", want)
		}
	}
}
