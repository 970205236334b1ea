package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrix"

	"github.com/switchboard-chat/switchboard/homeserver/matrixerr"
)

// TestRemoteErrorMapping maps the errors the federation client returns:
// a remote Matrix error keeps its errcode (and room_version), a remote
// 5xx is 502, an answer without a Matrix error is 502 naming the server,
// a cancelled request stays a cancellation.
func TestRemoteErrorMapping(t *testing.T) {
	f := &Service{log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	httpErr := func(code int, body string) error {
		var re gomatrix.RespError
		var wrap error
		if json.Unmarshal([]byte(body), &re) == nil && re.ErrCode != "" {
			wrap = re
		}
		return fmt.Errorf("make_join: %w", gomatrix.HTTPError{Code: code, Contents: []byte(body), WrappedError: wrap, Message: "Failed to GET JSON"})
	}
	for _, c := range []struct {
		name    string
		err     error
		status  int
		errcode string
		extra   string
	}{
		{"incompatible version", httpErr(400, `{"errcode":"M_INCOMPATIBLE_ROOM_VERSION","error":"no","room_version":"9"}`), 400, "M_INCOMPATIBLE_ROOM_VERSION", "9"},
		{"forbidden", httpErr(403, `{"errcode":"M_FORBIDDEN","error":"You are banned"}`), 403, "M_FORBIDDEN", ""},
		{"remote 500", httpErr(500, `{"errcode":"M_UNKNOWN","error":"boom"}`), 502, "M_UNKNOWN", ""},
		{"html", httpErr(404, `<html>nope</html>`), 502, "M_UNKNOWN", ""},
	} {
		err := f.remoteError(ctx, "example.org", "make_join", c.err)
		var me *matrixerr.Error
		if !errors.As(err, &me) || me.Status != c.status || me.ErrCode != c.errcode {
			t.Fatalf("%s: %v, want %d %s", c.name, err, c.status, c.errcode)
		}
		if strings.Contains(me.Message, "contents=") || strings.Contains(me.Message, "[") {
			t.Fatalf("%s: unreadable message %q", c.name, me.Message)
		}
		if c.extra != "" && me.Extra["room_version"] != c.extra {
			t.Fatalf("%s: room_version %v", c.name, me.Extra)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := f.remoteError(cctx, "example.org", "make_join", fmt.Errorf("x: %w", context.Canceled)); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled request became %v", err)
	}
}
