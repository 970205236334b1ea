package livekit

import (
	"context"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/internal/testkit/lkclient"
)

// Media tests with a real Go LiveKit client (internal/testkit/lkclient: OpenID,
// /sfu/get, the /rtc/v1 WebSocket, one pion PeerConnection publishing
// synthetic VP8 and Opus, receive-only m-lines offered when the server
// asks for them). "Decodes" below means what a decoder needs: a key frame
// of each publisher's video arrives, and frames keep coming after it.

// lkJoin joins cli to room's LiveKit call, publishing audio and video and
// subscribing to everything (livekit-client's default).
func lkJoin(t *testing.T, e *env, hc *http.Client, cli *mautrix.Client, room id.RoomID, name string) *lkclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := lkclient.Join(ctx, hc, e.url, cli, room, name, true)
	if err != nil {
		t.Fatalf("%s joins: %v", name, err)
	}
	return c
}

// waitDecoding waits until c receives a key frame of the video of the
// participant with SID from, then until 30 more packets of it arrive.
func waitDecoding(t *testing.T, c *lkclient.Client, who, from, fromWho string) {
	t.Helper()
	var v lkclient.VideoFrom
	waitFor(t, who+" receiving "+fromWho+"'s video", func() bool {
		v = c.Video(from)
		return v.Keyframes > 0
	})
	if v.BeforeKeyframe > 0 {
		// Packets sent before the client applied the answer declaring
		// them: pion drops the first ones, the client asks for a key
		// frame (lkclient, as browsers do).
		t.Logf("%s got %d packets of %s's video before its first key frame", who, v.BeforeKeyframe, fromWho)
	}
	n := v.Packets
	waitFor(t, who+" to keep receiving "+fromWho+"'s video", func() bool { return c.Video(from).Packets > n+30 })
	if errs := c.Errs(); len(errs) > 0 {
		t.Fatalf("%s: %v", who, errs)
	}
}

// callEnv is a room with alice and bob in it, and an HTTP client whose
// connections are closed at the end (the leak check follows).
func callEnv(t *testing.T) (*env, *http.Client, *mautrix.Client, *mautrix.Client, id.RoomID) {
	return callEnvWith(t, envOpts{})
}

func callEnvWith(t *testing.T, o envOpts) (*env, *http.Client, *mautrix.Client, *mautrix.Client, id.RoomID) {
	e := newEnv(t, o)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: testTimeout}
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	room := e.room(t, alice)
	if _, err := bob.JoinRoomByID(context.Background(), room); err != nil {
		t.Fatal(err)
	}
	return e, hc, alice, bob, room
}

// TestReplacedConnectionGetsVideo is Element Call's reconnect: bob
// connects, sends his join offer, drops the WebSocket at once and
// connects again with the same identity. His second connection replaces
// the first, and alice and bob each decode the other's video.
func TestReplacedConnectionGetsVideo(t *testing.T) {
	e, hc, alice, bob, room := callEnv(t)
	a := lkJoin(t, e, hc, alice, room, "alice")
	defer a.Close()
	b1 := lkJoin(t, e, hc, bob, room, "bob")
	b1.Abort()
	b2 := lkJoin(t, e, hc, bob, room, "bob")
	defer b2.Close()
	waitDecoding(t, b2, "bob", a.SID(), "alice")
	waitDecoding(t, a, "alice", b2.SID(), "bob")
	// Bob's first connection is gone: alice and bob's second are left.
	waitFor(t, "bob's first connection to leave", func() bool {
		e.sig.mu.Lock()
		defer e.sig.mu.Unlock()
		for _, r := range e.sig.rooms {
			return len(r.list(nil)) == 2 && r.get(b1.SID()) == nil
		}
		return false
	})
}

// TestJoinersGetVideo: three participants join one after another, each
// decoding every other's video (the bench's smoke join, in process).
func TestJoinersGetVideo(t *testing.T) {
	e, hc, alice, bob, room := callEnv(t)
	carol := e.user(t, "carol")
	if _, err := carol.JoinRoomByID(context.Background(), room); err != nil {
		t.Fatal(err)
	}
	var cs []*lkclient.Client
	names := []string{"alice", "bob", "carol"}
	for i, cli := range []*mautrix.Client{alice, bob, carol} {
		c := lkJoin(t, e, hc, cli, room, names[i])
		defer c.Close()
		cs = append(cs, c)
	}
	for i, c := range cs {
		for j, o := range cs {
			if i != j {
				waitDecoding(t, c, names[i], o.SID(), names[j])
			}
		}
	}
}
