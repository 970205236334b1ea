package federation

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/switchboard-chat/switchboard/homeserver/matrixerr"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/clock"
)

// FuzzInviteRequest feeds arbitrary request contents to the invite
// handler's parsing and checks: no panic, and a refusal is a Matrix error.
func FuzzInviteRequest(f *testing.F) {
	f.Add([]byte(`{"event":{},"room_version":"10"}`))
	f.Add([]byte(`{"event":{"type":"m.room.member","content":{"membership":"invite"},"state_key":"@b:x","room_id":"!r:x","sender":"@a:y","depth":1,"prev_events":[],"auth_events":[],"origin_server_ts":1},"room_version":"10"}`))
	f.Add([]byte(`{"event":[1,2],"room_version":"10"}`))
	f.Add([]byte(`{"event":{"depth":9223372036854775807},"room_version":"9"}`))
	f.Add([]byte(`{"event":{"content":{"x":1.5}},"room_version":"10","invite_room_state":[{}]}`))
	f.Add([]byte(`null`))
	ts := newTestService(f, storagetest.Backends(f)[0], clock.Real())
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPut, "/_matrix/federation/v2/invite/r/e", bytes.NewReader(body))
		c := ts.echo.NewContext(req, httptest.NewRecorder())
		c.Set(ctxOrigin, "remote.test")
		c.Set(ctxContent, body)
		c.SetParamNames("roomId", "eventId")
		c.SetParamValues("!r:remote.test", "$e")
		err := ts.invite(c)
		if err == nil {
			t.Fatalf("an unsigned invite from an unknown server was accepted: %s", body)
		}
		// What the HTTP edge answers.
		var me *matrixerr.Error
		if !errors.As(err, &me) || me.Status < 400 || me.Status >= 500 || me.ErrCode == "" {
			t.Fatalf("refusal %v is not a 4xx Matrix error", err)
		}
	})
}
