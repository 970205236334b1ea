package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"
)

// TestDevLiveKitWiring checks what livekitwire.go connects in a running
// --dev server: the homeserver's get_token (MSC4195) is signed by the
// token service and accepts only the SFU URL the token service hands
// out (RTCConfig.LiveKitURLs), the token joins the SFU, and a delegated
// delayed leave is sent when the SFU socket dies, emptying the
// membership.
func TestDevLiveKitWiring(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	r := startServe(t, append([]string{"--dev", "--data-dir", dir}, freePortArgs()...)...)
	defer func() {
		if err := r.stop(t); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	base := "http://" + r.addrs.Client
	sfuURL := "ws://" + r.addrs.Client + liveKitSFUPath
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	pw := writeFile(t, t.TempDir(), "pw", "correct horse battery\n")
	var out, errOut bytes.Buffer
	a := &app{stdout: &out, stderr: &errOut, getenv: envMap(nil)}
	if err := a.run(context.Background(), []string{"register", "--data-dir", dir, "--url", base, "--user", "alice",
		"--password-file", pw}); err != nil {
		t.Fatalf("register: %v\n%s", err, errOut.String())
	}
	token := login(t, c, base, "alice", "correct horse battery")
	do := func(method, path string, body any) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		m := map[string]any{}
		_ = json.Unmarshal(data, &m)
		return resp.StatusCode, m
	}
	st, who := do(http.MethodGet, "/_matrix/client/v3/account/whoami", nil)
	dev, _ := who["device_id"].(string)
	if st != 200 || dev == "" {
		t.Fatalf("whoami: %d %v", st, who)
	}
	st, created := do(http.MethodPost, "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat"})
	room, _ := created["room_id"].(string)
	if st != 200 || room == "" {
		t.Fatalf("createRoom: %d %v", st, created)
	}
	req := func(u string) map[string]any {
		return map[string]any{"url": u, "room_id": room, "slot_id": "m.call#ROOM",
			"member": map[string]any{"id": "m1", "claimed_device_id": dev}}
	}
	const getToken = "/_matrix/client/unstable/io.element.msc4195/rtc/livekit/get_token"
	if st, res := do(http.MethodPost, getToken, req("wss://elsewhere.example/sfu")); st != 400 || res["errcode"] != "M_INVALID_PARAM" {
		t.Fatalf("get_token for another SFU: %d %v", st, res)
	}
	st, res := do(http.MethodPost, getToken, req(sfuURL))
	jwt, _ := res["jwt"].(string)
	if st != 200 || jwt == "" {
		t.Fatalf("get_token: %d %v", st, res)
	}

	key := "_@alice:localhost_" + dev + "_m.call"
	statePath := "/_matrix/client/v3/rooms/" + url.PathEscape(room) + "/state/org.matrix.msc3401.call.member/" + url.PathEscape(key)
	if st, res := do(http.MethodPut, statePath, map[string]any{"application": "m.call", "call_id": "", "scope": "m.room",
		"device_id": dev, "focus_active": map[string]any{"type": "livekit"}}); st != 200 {
		t.Fatalf("membership: %d %v", st, res)
	}
	st, res = do(http.MethodPut, statePath+"?org.matrix.msc4140.delay=3600000", map[string]any{})
	delayID, _ := res["delay_id"].(string)
	if st != 200 || delayID == "" {
		t.Fatalf("delayed leave: %d %v", st, res)
	}
	d := req(sfuURL)
	d["delay_id"] = delayID
	if st, res := do(http.MethodPost, "/_matrix/client/unstable/io.element.msc4195/rtc/livekit/delegate_delayed_leave", d); st != 200 {
		t.Fatalf("delegate: %d %v", st, res)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, sfuURL+"/rtc/v1?access_token="+url.QueryEscape(jwt), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	_, b, err := ws.Read(ctx)
	var msg livekit.SignalResponse
	if err != nil || proto.Unmarshal(b, &msg) != nil || msg.GetJoin() == nil {
		t.Fatalf("join: %v %v", &msg, err)
	}
	if st, res := do(http.MethodGet, statePath, nil); st != 200 || len(res) == 0 {
		t.Fatalf("membership while connected: %d %v", st, res)
	}
	_ = ws.CloseNow() // the socket dies
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, res := do(http.MethodGet, statePath, nil)
		if st == 200 && len(res) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("membership still %d %v after the SFU socket died", st, res)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
