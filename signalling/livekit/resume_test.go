package livekit

import (
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-chat/switchboard/internal/testkit/lkclient"
)

// TestResumeAfterSignalLoss is livekit-client's resume after a network
// change: alice and bob decode each other's video; bob's WebSocket drops
// (no leave, no close handshake) and he reconnects with reconnect=1 and
// his participant SID. The server answers with a ReconnectResponse, keeps
// his participant (same SID, alice told nothing: still ACTIVE to her, one
// conference of two), answers his ICE-restart offer, and media flows
// again both ways. Then bob resumes once more, and leaves: alice sees
// him go and the SFU empties.
func TestResumeAfterSignalLoss(t *testing.T) {
	e, hc, alice, bob, room := callEnvWith(t, envOpts{server: func(c *ServerConfig) { c.ResumeWindow = testTimeout }})
	a := lkJoin(t, e, hc, alice, room, "alice")
	defer a.Close()
	b := lkJoin(t, e, hc, bob, room, "bob")
	defer b.Close()
	waitDecoding(t, b, "bob", a.SID(), "alice")
	waitDecoding(t, a, "alice", b.SID(), "bob")
	bobID := string(bob.UserID) + ":" + string(bob.DeviceID)

	for round := range 2 {
		answers := b.Answers()
		fromBob, fromAlice := a.Video(b.SID()).Packets, b.Video(a.SID()).Packets
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		err := b.Resume(ctx, hc)
		cancel()
		if err != nil {
			t.Fatalf("resume %d: %v", round+1, err)
		}
		waitFor(t, "the answer to bob's ICE restart", func() bool { return b.Answers() > answers })
		waitFor(t, "alice to receive bob's video after the resume", func() bool {
			return a.Video(b.SID()).Packets > fromBob+60
		})
		waitFor(t, "bob to receive alice's video after the resume", func() bool {
			return b.Video(a.SID()).Packets > fromAlice+60
		})
		if st := e.sfu.Stats(); st.Conferences != 1 || st.Participants != 2 {
			t.Fatalf("after resume %d the SFU holds %+v, want one conference of two", round+1, st)
		}
		if pi, ok := a.Participant(bobID); !ok || pi.GetSid() != b.SID() || pi.GetState() == livekit.ParticipantInfo_DISCONNECTED {
			t.Fatalf("alice's view of bob after resume %d: %v", round+1, pi)
		}
		for _, c := range []*lkclient.Client{a, b} {
			if errs := c.Errs(); len(errs) > 0 {
				t.Fatalf("client errors: %v", errs)
			}
		}
	}

	b.Close()
	waitFor(t, "alice to see bob leave", func() bool {
		pi, ok := a.Participant(bobID)
		return ok && pi.GetState() == livekit.ParticipantInfo_DISCONNECTED
	})
	a.Close()
	waitFor(t, "an empty SFU", func() bool { return e.sfu.Stats().Participants == 0 })
}

// TestResumeRefusedAsksForReconnect: a resume naming no session (an
// unknown SID, another identity's SID, or one whose resume window passed)
// is answered with a LeaveRequest whose action is RECONNECT, which makes
// livekit-client join afresh, and nothing else changes.
func TestResumeRefusedAsksForReconnect(t *testing.T) {
	e, hc, alice, bob, room := callEnvWith(t, envOpts{server: func(c *ServerConfig) { c.ResumeWindow = time.Second }})
	a := lkJoin(t, e, hc, alice, room, "alice")
	defer a.Close()
	b := lkJoin(t, e, hc, bob, room, "bob")
	bSID := b.SID()
	b.Abort()
	st, out := e.post(t, "/sfu/get", map[string]any{"room": room, "openid_token": openID(t, alice),
		"device_id": string(alice.DeviceID)})
	aliceJWT, _ := out["jwt"].(string)
	if st != 200 || aliceJWT == "" {
		t.Fatalf("/sfu/get: %d %v", st, out)
	}
	resume := func(token, sid string) *livekit.LeaveRequest {
		t.Helper()
		jr, _ := proto.Marshal(&livekit.JoinRequest{Reconnect: true, ParticipantSid: sid})
		w, _ := proto.Marshal(&livekit.WrappedJoinRequest{JoinRequest: jr})
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, e.wsURL(token)+"&join_request="+url.QueryEscape(base64.URLEncoding.EncodeToString(w)),
			&websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer ws.CloseNow()
		_, msg, err := ws.Read(ctx)
		var res livekit.SignalResponse
		if err == nil {
			err = proto.Unmarshal(msg, &res)
		}
		if err != nil || res.GetLeave() == nil {
			t.Fatalf("first answer to a refused resume: %v %v", &res, err)
		}
		_, _, err = ws.Read(ctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusNormalClosure {
			t.Fatalf("after the leave: %v, want a normal close", err)
		}
		return res.GetLeave()
	}
	for name, sid := range map[string]string{
		"unknown SID":   "PA_NOSUCHPARTIC",
		"another's SID": bSID, // bob's, with alice's token
		"no SID":        "",
		"a long SID":    strings.Repeat("x", 300),
	} {
		if l := resume(aliceJWT, sid); l.GetAction() != livekit.LeaveRequest_RECONNECT {
			t.Errorf("%s: leave action %v, want RECONNECT", name, l.GetAction())
		}
	}
	// Bob's window passes: he leaves, and his resume is refused too.
	waitFor(t, "bob's session to end after the resume window", func() bool { return e.sfu.Stats().Participants == 1 })
	if err := b.Resume(context.Background(), hc); err == nil || !strings.Contains(err.Error(), "RECONNECT") {
		t.Fatalf("bob's late resume: %v, want a leave asking for RECONNECT", err)
	}
	if st := e.sfu.Stats(); st.Participants != 1 {
		t.Fatalf("refused resumes changed the SFU: %+v", st)
	}
}
