package homeserver

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/internal/clock"
)

// rawResp is an HTTP answer read without a Matrix client, to check exact
// status codes and bodies.
type rawResp struct {
	Status int
	Raw    []byte
	Body   map[string]any
}

func (r rawResp) errcode() string { s, _ := r.Body["errcode"].(string); return s }

// do sends method path (relative to the server) with an optional access
// token. A string body is sent as is; anything else as JSON.
func (ts *testServer) do(t *testing.T, method, path, token string, body any) rawResp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(testCtx(t), method, ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := rawResp{Status: resp.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &out.Body)
	return out
}

// wantStatus fails unless r has the status and (when code is not "") errcode.
func wantStatus(t *testing.T, r rawResp, status int, code string) {
	t.Helper()
	if r.Status != status || (code != "" && r.errcode() != code) {
		t.Fatalf("want %d %s, got %d %s", status, code, r.Status, r.Raw)
	}
}

// wantUIA fails unless r is a UIA 401 offering m.login.password, with the
// given errcode ("" for the first, attempt-less answer, which must also
// start a session).
func wantUIA(t *testing.T, r rawResp, code string) {
	t.Helper()
	if r.Status != http.StatusUnauthorized || r.errcode() != code {
		t.Fatalf("want UIA 401 %q, got %d %s", code, r.Status, r.Raw)
	}
	var body struct {
		Flows []struct {
			Stages []string `json:"stages"`
		} `json:"flows"`
		Session string `json:"session"`
	}
	if err := json.Unmarshal(r.Raw, &body); err != nil || len(body.Flows) == 0 || len(body.Flows[0].Stages) == 0 ||
		body.Flows[0].Stages[0] != "m.login.password" || (code == "" && body.Session == "") {
		t.Fatalf("UIA body without an m.login.password flow and session: %s", r.Raw)
	}
}

// passwordAuth is a UIA auth dict for localpart with password "password".
func passwordAuth(localpart string) map[string]any {
	return map[string]any{"type": "m.login.password", "password": "password",
		"identifier": map[string]string{"type": "m.id.user", "user": localpart}}
}

// login logs localpart (password "password") in as a new device.
func (ts *testServer) login(t *testing.T, localpart, deviceID, name string) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(ts.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cli.Login(testCtx(t), &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: localpart}, Password: "password",
		DeviceID: id.DeviceID(deviceID), InitialDeviceDisplayName: name, StoreCredentials: true})
	if err != nil {
		t.Fatalf("login %s: %v", localpart, err)
	}
	return cli
}

// newTestClock returns a fake clock (internal/clock) for Config.Clock or
// Config.Now.
func newTestClock() *clock.Fake { return clock.NewFake(time.Unix(1_800_000_000, 0)) }
