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
