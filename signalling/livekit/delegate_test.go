package livekit

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/coder/websocket"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

const (
	rtcGetToken = "/_matrix/client/unstable/io.element.msc4195/rtc/livekit/get_token"
	rtcDelegate = "/_matrix/client/unstable/io.element.msc4195/rtc/livekit/delegate_delayed_leave"
)

// hsDo sends an authenticated client API request to the homeserver and
// returns the status and decoded JSON answer.
func (e *env) hsDo(t testing.TB, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var b []byte
	if raw, ok := body.([]byte); ok {
		b = raw
	} else if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(b))
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
	out := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// callMember writes cli's MatrixRTC membership for dev and schedules its
// leave (the emptied event) as an hour-long delayed event (MSC4140), as
// matrix-js-sdk does before delegating it; it returns the delay ID.
func callMember(t *testing.T, e *env, cli *mautrix.Client, room id.RoomID, dev, memberID string) string {
	t.Helper()
	ctx := context.Background()
	key := "_" + string(cli.UserID) + "_" + dev + "_m.call"
	memberType := event.Type{Type: callMemberType, Class: event.StateEventType}
	if _, err := cli.SendStateEvent(ctx, room, memberType, key, map[string]any{
		"application": "m.call", "call_id": "", "scope": "m.room", "device_id": dev,
		"member":       map[string]any{"id": memberID, "device_id": dev, "user_id": cli.UserID},
		"focus_active": map[string]any{"type": "livekit", "focus_selection": "oldest_membership"},
	}); err != nil {
		t.Fatalf("call member: %v", err)
	}
	path := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room)) + "/state/" + callMemberType + "/" +
		url.PathEscape(key) + "?org.matrix.msc4140.delay=3600000"
	st, out := e.hsDo(t, http.MethodPut, path, cli.AccessToken, map[string]any{})
	delayID, _ := out["delay_id"].(string)
	if st != http.StatusOK || delayID == "" {
		t.Fatalf("delayed leave: %d %v", st, out)
	}
	return delayID
}

// inCallNow reads whether dev of cli has a non-empty call membership.
func inCallNow(t *testing.T, e *env, cli *mautrix.Client, room id.RoomID, dev string) bool {
	t.Helper()
	in, err := inCall(context.Background(), e.hs, MatrixMember{RoomID: string(room), UserID: string(cli.UserID), DeviceID: dev})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// dialJWT connects with jwt and reads the JoinResponse.
func dialJWT(t *testing.T, e *env, ctx context.Context, jwt string) (*websocket.Conn, *livekit.JoinResponse) {
	t.Helper()
	c, _, err := websocket.Dial(ctx, e.wsURL(jwt), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var res livekit.SignalResponse
	if err := proto.Unmarshal(b, &res); err != nil || res.GetJoin() == nil {
		t.Fatalf("first message: %v %v", &res, err)
	}
	return c, res.GetJoin()
}

// TestDelegatedLeaveFollowsSFU is the whole loop of MSC4195's delegated
// delayed leave: a member gets its token from the homeserver's get_token
// (alice, member ID and slot) or the token service's /sfu/get (bob,
// legacy), writes its membership, delegates its hour-long delayed leave,
// and connects to the SFU. While connected the membership stays; when
// the socket dies (no close frame) and the client does not resume
// within the resume window (resume.go; short here), the homeserver
// sends the leave at once, emptying the membership, and only that
// member's.
func TestDelegatedLeaveFollowsSFU(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	room := e.room(t, alice)
	if _, err := bob.JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	var pl event.PowerLevelsEventContent
	if err := alice.StateEvent(ctx, room, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	if pl.Events == nil {
		pl.Events = map[string]int{}
	}
	pl.Events[callMemberType] = 0
	if _, err := alice.SendStateEvent(ctx, room, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	aDev, bDev := string(alice.DeviceID), string(bob.DeviceID)

	// Alice: the homeserver's get_token (matrix-js-sdk 43).
	st, out := e.hsDo(t, http.MethodPost, rtcGetToken, alice.AccessToken, map[string]any{
		"url": e.sfuURL, "room_id": room, "slot_id": "m.call#ROOM",
		"member": map[string]any{"id": "alice-member", "claimed_device_id": aDev}})
	aJWT, _ := out["jwt"].(string)
	if st != http.StatusOK || aJWT == "" {
		t.Fatalf("get_token: %d %v", st, out)
	}
	aDelay := callMember(t, e, alice, room, aDev, "alice-member")
	if st, out := e.hsDo(t, http.MethodPost, rtcDelegate, alice.AccessToken, map[string]any{
		"url": e.sfuURL, "room_id": room, "slot_id": "m.call#ROOM", "delay_id": aDelay,
		"member": map[string]any{"id": "alice-member", "claimed_device_id": aDev}}); st != http.StatusOK {
		t.Fatalf("alice delegate: %d %v", st, out)
	}
	ca, join := dialJWT(t, e, ctx, aJWT)
	defer ca.CloseNow()
	if want := memberIdentity(string(alice.UserID), aDev, "alice-member"); join.GetParticipant().GetIdentity() != want {
		t.Fatalf("alice's identity %q, want %q", join.GetParticipant().GetIdentity(), want)
	}
	if want := RoomAlias(string(room), "m.call#ROOM"); join.GetRoom().GetName() != want {
		t.Fatalf("alice's LiveKit room %q, want %q", join.GetRoom().GetName(), want)
	}

	// Bob: the legacy /sfu/get, which names neither slot nor member.
	st, out = e.post(t, "/sfu/get", map[string]any{"room": room, "openid_token": openID(t, bob), "device_id": bDev})
	if st != http.StatusOK {
		t.Fatalf("/sfu/get: %d %v", st, out)
	}
	bDelay := callMember(t, e, bob, room, bDev, "bob-member")
	if st, out := e.hsDo(t, http.MethodPost, rtcDelegate, bob.AccessToken, map[string]any{
		"url": e.sfuURL, "room_id": room, "slot_id": "m.call#ROOM", "delay_id": bDelay,
		"member": map[string]any{"id": "bob-member", "claimed_device_id": bDev}}); st != http.StatusOK {
		t.Fatalf("bob delegate: %d %v", st, out)
	}
	cb, join := dialJWT(t, e, ctx, out["jwt"].(string))
	defer cb.CloseNow()
	if len(join.GetOtherParticipants()) != 1 {
		t.Fatalf("bob sees %d others, want alice", len(join.GetOtherParticipants()))
	}

	socketsDie(t, e, room, delegated{bob, bDev, cb}, delegated{alice, aDev, ca})
}

// delegated is a member whose delayed leave was delegated, and its socket.
type delegated struct {
	cli  *mautrix.Client
	dev  string
	conn *websocket.Conn
}

// socketsDie kills first's socket (no close frame, as a crashed page):
// once the resume window passes (short here) its membership is emptied
// and second's stays (the homeserver's check
// that sent first's leave saw second connected); then second's socket
// dies and its membership goes too.
func socketsDie(t *testing.T, e *env, room id.RoomID, first, second delegated) {
	t.Helper()
	if err := first.conn.CloseNow(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, first.cli.UserID.String()+"'s membership emptied", func() bool { return !inCallNow(t, e, first.cli, room, first.dev) })
	if !inCallNow(t, e, second.cli, room, second.dev) {
		t.Fatalf("%s's membership went with %s's", second.cli.UserID, first.cli.UserID)
	}
	if err := second.conn.CloseNow(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, second.cli.UserID.String()+"'s membership emptied", func() bool { return !inCallNow(t, e, second.cli, room, second.dev) })
}

// TestGetTokenRefusals: the homeserver's get_token refuses what it must
// with the Matrix error and issues nothing.
func TestGetTokenRefusals(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	alice, carol := e.user(t, "alice"), e.user(t, "carol")
	room := e.room(t, alice)
	_ = ctx
	good := func() map[string]any {
		return map[string]any{"url": e.sfuURL, "room_id": room, "slot_id": "m.call#ROOM",
			"member": map[string]any{"id": "m1", "claimed_device_id": string(alice.DeviceID)}}
	}
	with := func(k string, v any) map[string]any { b := good(); b[k] = v; return b }
	for _, c := range []struct {
		name, token string
		body        any
		status      int
		errcode     string
	}{
		{"no token", "", good(), http.StatusUnauthorized, "M_MISSING_TOKEN"},
		{"not JSON", alice.AccessToken, []byte("[1,"), http.StatusBadRequest, "M_NOT_JSON"},
		{"no slot", alice.AccessToken, with("slot_id", nil), http.StatusBadRequest, "M_BAD_JSON"},
		{"no member id", alice.AccessToken, with("member", map[string]any{}), http.StatusBadRequest, "M_BAD_JSON"},
		{"other SFU", alice.AccessToken, with("url", "wss://elsewhere.example/sfu"), http.StatusBadRequest, "M_INVALID_PARAM"},
		{"other server", alice.AccessToken, with("server_name", "other.example"), http.StatusBadRequest, "M_INVALID_PARAM"},
		{"other device", alice.AccessToken, with("member", map[string]any{"id": "m1", "claimed_device_id": "NOTMINE"}), http.StatusForbidden, "M_FORBIDDEN"},
		{"not in room", carol.AccessToken, with("member", map[string]any{"id": "m1", "claimed_device_id": string(carol.DeviceID)}), http.StatusForbidden, "M_FORBIDDEN"},
		{"no such room", alice.AccessToken, with("room_id", "!nope:test.local"), http.StatusForbidden, "M_FORBIDDEN"},
		{"not a room ID", alice.AccessToken, with("room_id", "#alias:test.local"), http.StatusBadRequest, "M_INVALID_PARAM"},
		{"control character", alice.AccessToken, with("slot_id", "m.call\u0000"), http.StatusBadRequest, "M_INVALID_PARAM"},
	} {
		st, out := e.hsDo(t, http.MethodPost, rtcGetToken, c.token, c.body)
		if st != c.status || out["errcode"] != c.errcode || out["jwt"] != nil {
			t.Errorf("%s: %d %v, want %d %s", c.name, st, out, c.status, c.errcode)
		}
	}
	if st, out := e.hsDo(t, http.MethodPost, rtcGetToken, alice.AccessToken, good()); st != http.StatusOK || out["jwt"] == nil {
		t.Fatalf("good request: %d %v", st, out)
	}
}

// FuzzGetTokenBody: any body to the homeserver's get_token gets a Matrix
// error, or a JWT for the requesting user and device in the room it
// named; nothing panics.
func FuzzGetTokenBody(f *testing.F) {
	e := newEnv(f, envOpts{})
	alice := e.user(f, "alice")
	room := e.room(f, alice)
	dev := string(alice.DeviceID)
	for _, s := range []string{
		`{"url":"` + e.sfuURL + `","room_id":"` + string(room) + `","slot_id":"m.call#ROOM","member":{"id":"m","claimed_device_id":"` + dev + `"}}`,
		`{"url":"` + e.sfuURL + `","room_id":"` + string(room) + `","slot_id":"m.call#ROOM","member":{"id":"m"}}`,
		`{"url":"` + e.sfuURL + `","room_id":"` + string(room) + `","slot_id":"\u0000","member":{"id":"m"}}`,
		`{"url":1,"room_id":[],"slot_id":{},"member":"x"}`,
		`{"url":"` + e.sfuURL + `","room_id":"` + string(room) + `","slot_id":"s","member":{"id":"m"},"server_name":"x"}`,
		`null`, `[`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		st, out := e.hsDo(t, http.MethodPost, rtcGetToken, alice.AccessToken, body)
		if st >= 500 {
			t.Fatalf("%d %v for a client's mistake", st, out)
		}
		if st != http.StatusOK {
			if code, _ := out["errcode"].(string); len(code) < 3 || code[:2] != "M_" || out["jwt"] != nil {
				t.Fatalf("%d %v is not a Matrix error", st, out)
			}
			return
		}
		jwt, _ := out["jwt"].(string)
		g, err := e.sig.keys.verify(jwt)
		if err != nil {
			t.Fatalf("issued token does not verify: %v", err)
		}
		if g.Matrix.UserID != string(alice.UserID) || g.Matrix.DeviceID != dev || g.Matrix.RoomID != string(room) {
			t.Fatalf("token for %+v", g.Matrix)
		}
	})
}

// TestDelegatedLeaveThroughTokenService: Element Call 0.26 delegates its
// hour-long delayed leave by naming it (delay_id, delay_timeout,
// delay_cs_api_url) in a /get_token or /sfu/get request. When the
// member's socket dies (a crashed page: no leave, no close frame) the
// membership is emptied at once, not an hour later. A delay_id that is
// not the member's own is refused with M_INVALID_PARAM and no token.
func TestDelegatedLeaveThroughTokenService(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	room := e.room(t, alice)
	if _, err := bob.JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	aDev, bDev := string(alice.DeviceID), string(bob.DeviceID)
	aDelay := callMember(t, e, alice, room, aDev, "alice-member")
	delay := func(id string) map[string]any {
		return map[string]any{"delay_id": id, "delay_timeout": 3600000, "delay_cs_api_url": e.url}
	}
	getToken := func(cli *mautrix.Client, dev, member string, extra map[string]any) (int, map[string]any) {
		body := map[string]any{"room_id": room, "slot_id": "m.call#ROOM", "openid_token": openID(t, cli),
			"member": map[string]any{"id": member, "claimed_user_id": cli.UserID, "claimed_device_id": dev}}
		for k, v := range extra {
			body[k] = v
		}
		return e.post(t, "/get_token", body)
	}

	// Bob names alice's delayed leave, then one that does not exist.
	for _, id := range []string{aDelay, "syd_nosuchdelay"} {
		st, out := getToken(bob, bDev, "bob-member", delay(id))
		if st != http.StatusBadRequest || out["errcode"] != "M_INVALID_PARAM" || out["jwt"] != nil {
			t.Fatalf("bob delegating %s: %d %v, want 400 M_INVALID_PARAM and no token", id, st, out)
		}
	}

	// Alice on /get_token, bob on the legacy /sfu/get, each with their own.
	st, out := getToken(alice, aDev, "alice-member", delay(aDelay))
	aJWT, _ := out["jwt"].(string)
	if st != http.StatusOK || aJWT == "" {
		t.Fatalf("alice /get_token with delay_id: %d %v", st, out)
	}
	bDelay := callMember(t, e, bob, room, bDev, "bob-member")
	legacy := map[string]any{"room": room, "openid_token": openID(t, bob), "device_id": bDev}
	for k, v := range delay(bDelay) {
		legacy[k] = v
	}
	st, out = e.post(t, "/sfu/get", legacy)
	bJWT, _ := out["jwt"].(string)
	if st != http.StatusOK || bJWT == "" {
		t.Fatalf("bob /sfu/get with delay_id: %d %v", st, out)
	}
	ca, _ := dialJWT(t, e, ctx, aJWT)
	defer ca.CloseNow()
	cb, _ := dialJWT(t, e, ctx, bJWT)
	defer cb.CloseNow()

	socketsDie(t, e, room, delegated{bob, bDev, cb}, delegated{alice, aDev, ca})
}
