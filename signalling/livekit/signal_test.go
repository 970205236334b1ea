package livekit

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"
)

// signedToken signs LiveKit claims with secret, for tokens the token
// service would never issue (expired, no room).
func signedToken(t *testing.T, secret string, exp time.Time, video map[string]any) string {
	t.Helper()
	claims := jwt.MapClaims{"iss": testKey, "sub": "@x:test.local:DEV", "nbf": time.Now().Add(-time.Hour).Unix(),
		"exp": exp.Unix(), "video": video}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *env) wsURL(token string) string {
	return "ws" + strings.TrimPrefix(e.url, "http") + "/livekit/sfu/rtc/v1?access_token=" + url.QueryEscape(token)
}

// TestSignalRefusesBadTokens: no, expired, foreign-key and roomless
// tokens get 401 before any upgrade, on the socket and on validate
// (whose answers carry CORS, as livekit-client reads them cross-origin).
func TestSignalRefusesBadTokens(t *testing.T) {
	e := newEnv(t, envOpts{})
	room := map[string]any{"roomJoin": true, "room": "r1"}
	good := signedToken(t, testSecret, time.Now().Add(time.Hour), room)
	cases := map[string]string{
		"none":          "",
		"garbage":       "not.a.jwt",
		"expired":       signedToken(t, testSecret, time.Now().Add(-time.Hour), room),
		"other key":     signedToken(t, strings.Repeat("z", 40), time.Now().Add(time.Hour), room),
		"no room":       signedToken(t, testSecret, time.Now().Add(time.Hour), map[string]any{"roomJoin": true}),
		"no room join":  signedToken(t, testSecret, time.Now().Add(time.Hour), map[string]any{"room": "r1"}),
		"token for api": signedToken(t, testSecret, time.Now().Add(time.Hour), map[string]any{"roomAdmin": true}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			c, resp, err := websocket.Dial(ctx, e.wsURL(tok), nil)
			if err == nil {
				c.CloseNow()
				t.Fatal("connection accepted")
			}
			if resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("want 401, got %v %v", resp, err)
			}
			vr, err := http.Get(e.url + "/livekit/sfu/rtc/v1/validate?access_token=" + url.QueryEscape(tok))
			if err != nil {
				t.Fatal(err)
			}
			vr.Body.Close()
			if vr.StatusCode != http.StatusUnauthorized {
				t.Fatalf("validate: %d", vr.StatusCode)
			}
			if got := vr.Header.Get("Access-Control-Allow-Origin"); got != "*" {
				t.Fatalf("validate refusal is not readable cross-origin: Access-Control-Allow-Origin %q", got)
			}
		})
	}
	vr, err := http.Get(e.url + "/livekit/sfu/rtc/v1/validate?access_token=" + url.QueryEscape(good))
	if err != nil {
		t.Fatal(err)
	}
	vr.Body.Close()
	if vr.StatusCode != http.StatusOK || vr.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("validate good token: %d, Access-Control-Allow-Origin %q", vr.StatusCode, vr.Header.Get("Access-Control-Allow-Origin"))
	}
}

// dialGood connects with a valid token and reads the JoinResponse.
func dialGood(t *testing.T, e *env, ctx context.Context, identity string) *websocket.Conn {
	t.Helper()
	tok, err := e.sig.keys.mint(identity, "room1", time.Hour, MatrixMember{})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := websocket.Dial(ctx, e.wsURL(tok), nil)
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
	if res.GetJoin().GetParticipant().GetIdentity() != identity || res.GetJoin().GetRoom().GetName() != "room1" {
		t.Fatalf("join response %v", res.GetJoin())
	}
	return c
}

// readClose reads until the server closes and returns the close status
// and reason.
func readClose(t *testing.T, ctx context.Context, c *websocket.Conn) (websocket.StatusCode, string) {
	t.Helper()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Reason
		}
		t.Fatalf("read ended without a close frame: %v", err)
	}
}

// TestSignalProtocolErrors: malformed protobuf, text frames, oversized
// frames and floods close the socket with a reason; ping answers pong.
func TestSignalProtocolErrors(t *testing.T) {
	e := newEnv(t, envOpts{server: func(c *ServerConfig) {
		c.MaxMessageBytes = 4096
		c.MessageRate, c.MessageBurst = 1, 20
	}})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	c := dialGood(t, e, ctx, "@a:test.local:PING")
	ping, _ := proto.Marshal(&livekit.SignalRequest{Message: &livekit.SignalRequest_Ping{Ping: 42}})
	if err := c.Write(ctx, websocket.MessageBinary, ping); err != nil {
		t.Fatal(err)
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var res livekit.SignalResponse
		if proto.Unmarshal(b, &res) == nil && res.GetPong() == 42 {
			break
		}
	}
	c.Close(websocket.StatusNormalClosure, "")

	cases := []struct {
		name string
		send func(c *websocket.Conn) error
		code websocket.StatusCode
		why  string
	}{
		{"malformed protobuf", func(c *websocket.Conn) error {
			return c.Write(ctx, websocket.MessageBinary, []byte{0xff, 0xff, 0xff})
		}, websocket.StatusUnsupportedData, "malformed signal message"},
		{"text frame", func(c *websocket.Conn) error {
			return c.Write(ctx, websocket.MessageText, []byte(`{"ping":1}`))
		}, websocket.StatusUnsupportedData, "signal messages are binary protobuf"},
		{"oversized frame", func(c *websocket.Conn) error {
			return c.Write(ctx, websocket.MessageBinary, make([]byte, 8192))
		}, websocket.StatusMessageTooBig, ""},
		{"flood", func(c *websocket.Conn) error {
			for range 100 {
				if err := c.Write(ctx, websocket.MessageBinary, ping); err != nil {
					return nil // closed under us: the close frame tells why
				}
			}
			return nil
		}, websocket.StatusPolicyViolation, "too many signal messages"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialGood(t, e, ctx, "@a:test.local:"+strings.ReplaceAll(tc.name, " ", "_"))
			if err := tc.send(c); err != nil {
				t.Fatal(err)
			}
			code, why := readClose(t, ctx, c)
			if code != tc.code || (tc.why != "" && why != tc.why) {
				t.Fatalf("closed with %v %q, want %v %q", code, why, tc.code, tc.why)
			}
		})
	}
	// The refused clients left nothing behind.
	waitFor(t, "rooms empty", func() bool {
		e.sig.mu.Lock()
		defer e.sig.mu.Unlock()
		return len(e.sig.rooms) == 0
	})
}

// TestReplacedIdentityLeavesFirst: a second connection of one identity
// replaces the first as a LiveKit server does. Its JoinResponse does not
// list the first, the first gets a leave (DUPLICATE_IDENTITY), and the
// others hear that the first left before they hear of the second, and
// never after (livekit-client keeps remote participants by identity: a
// late leave of the first would remove the second).
func TestReplacedIdentityLeavesFirst(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := dialGood(t, e, ctx, "@a:test.local:A")
	defer a.CloseNow()
	b1 := dialGood(t, e, ctx, "@b:test.local:B")
	defer b1.CloseNow()
	// a hears of b1.
	var b1SID string
	for b1SID == "" {
		for _, pi := range readUpdate(t, ctx, a) {
			if pi.GetIdentity() == "@b:test.local:B" && pi.GetState() == livekit.ParticipantInfo_JOINED {
				b1SID = pi.GetSid()
			}
		}
	}
	tok, err := e.sig.keys.mint("@b:test.local:B", "room1", time.Hour, MatrixMember{})
	if err != nil {
		t.Fatal(err)
	}
	b2, _, err := websocket.Dial(ctx, e.wsURL(tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.CloseNow()
	_, b, err := b2.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var res livekit.SignalResponse
	if err := proto.Unmarshal(b, &res); err != nil || res.GetJoin() == nil {
		t.Fatalf("first message: %v %v", &res, err)
	}
	b2SID := res.GetJoin().GetParticipant().GetSid()
	for _, o := range res.GetJoin().GetOtherParticipants() {
		if o.GetIdentity() == "@b:test.local:B" {
			t.Fatalf("the new connection's JoinResponse lists the one it replaced: %v", o)
		}
	}
	// b1 is told to leave.
	for left := false; !left; {
		_, b, err := b1.Read(ctx)
		if err != nil {
			t.Fatalf("replaced connection closed without a leave: %v", err)
		}
		var res livekit.SignalResponse
		if proto.Unmarshal(b, &res) == nil && res.GetLeave() != nil {
			if r := res.GetLeave().GetReason(); r != livekit.DisconnectReason_DUPLICATE_IDENTITY {
				t.Fatalf("leave reason %v", r)
			}
			left = true
		}
	}
	// a: b1 gone, then b2 joined; nothing about b1 afterwards (until
	// the ping below comes back, so that the old session's end has run).
	waitFor(t, "the replaced session to end", func() bool {
		e.sig.mu.Lock()
		defer e.sig.mu.Unlock()
		return e.sig.rooms["room1"] != nil && len(e.sig.rooms["room1"].list(nil)) == 2
	})
	ping, _ := proto.Marshal(&livekit.SignalRequest{Message: &livekit.SignalRequest_Ping{Ping: 7}})
	if err := a.Write(ctx, websocket.MessageBinary, ping); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for {
		_, b, err := a.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var res livekit.SignalResponse
		if err := proto.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		if res.GetPong() == 7 {
			break
		}
		for _, pi := range res.GetUpdate().GetParticipants() {
			switch pi.GetSid() {
			case b1SID:
				seen = append(seen, "b1 "+pi.GetState().String())
			case b2SID:
				seen = append(seen, "b2 "+pi.GetState().String())
			}
		}
	}
	want := []string{"b1 DISCONNECTED", "b2 JOINED"}
	if strings.Join(seen, ", ") != strings.Join(want, ", ") {
		t.Fatalf("a heard %q, want %q", seen, want)
	}
}

// readUpdate reads messages until a ParticipantUpdate and returns its
// participants.
func readUpdate(t *testing.T, ctx context.Context, c *websocket.Conn) []*livekit.ParticipantInfo {
	t.Helper()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var res livekit.SignalResponse
		if err := proto.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		if u := res.GetUpdate(); u != nil {
			return u.GetParticipants()
		}
	}
}

// gatePresence holds ParticipantConnected of one user until released.
type gatePresence struct {
	user    string
	entered chan struct{}
	release chan struct{}
}

func (g *gatePresence) ParticipantConnected(m MatrixMember) {
	if m.UserID == g.user {
		close(g.entered)
		<-g.release
	}
}

func (g *gatePresence) ParticipantDisconnected(MatrixMember) {}

// TestJoinResponseComesFirst: the JoinResponse is a connection's first
// message even when another participant leaves while the new one is
// joining (seen with Element Call: its aborted first connection left
// while the second joined, and livekit-client failed the second with
// "did not receive join response, got update instead"). The homeserver
// being told of the join is held until the other has left.
func TestJoinResponseComesFirst(t *testing.T) {
	gate := &gatePresence{user: "@b:test.local", entered: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, envOpts{server: func(c *ServerConfig) { c.Presence = gate }})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := dialGood(t, e, ctx, "@a:test.local:A")
	defer a.CloseNow()
	c := dialGood(t, e, ctx, "@c:test.local:C")
	tok, err := e.sig.keys.mint("@b:test.local:B", "room1", time.Hour,
		MatrixMember{RoomID: "!r:test.local", UserID: "@b:test.local", DeviceID: "B"})
	if err != nil {
		t.Fatal(err)
	}
	type first struct {
		res *livekit.SignalResponse
		err error
	}
	got := make(chan first, 1)
	var b *websocket.Conn
	go func() {
		var err error
		b, _, err = websocket.Dial(ctx, e.wsURL(tok), nil)
		if err != nil {
			got <- first{err: err}
			return
		}
		_, msg, err := b.Read(ctx)
		var res livekit.SignalResponse
		if err == nil {
			err = proto.Unmarshal(msg, &res)
		}
		got <- first{&res, err}
	}()
	select {
	case <-gate.entered:
	case <-ctx.Done():
		t.Fatal("b never joined")
	}
	// c leaves while b is joining: the room is told.
	c.Close(websocket.StatusNormalClosure, "bye")
	waitFor(t, "c to leave", func() bool {
		e.sig.mu.Lock()
		defer e.sig.mu.Unlock()
		return len(e.sig.rooms["room1"].list(nil)) == 2
	})
	close(gate.release)
	f := <-got
	if b != nil {
		defer b.CloseNow()
	}
	if f.err != nil {
		t.Fatal(f.err)
	}
	if f.res.GetJoin() == nil {
		t.Fatalf("first message is %v, want the JoinResponse", f.res)
	}
	for _, o := range f.res.GetJoin().GetOtherParticipants() {
		if o.GetIdentity() != "@a:test.local:A" && o.GetIdentity() != "@c:test.local:C" {
			t.Fatalf("JoinResponse lists %v", o)
		}
	}
}
