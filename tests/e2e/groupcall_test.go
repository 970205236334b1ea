package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/bench/calls/callclient"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestGroupCallThroughBinary runs a group call through the focus of the
// real binary: `serve --dev` starts the focus (and says so in its log);
// two pion clients signalling through mautrix (to-device m.call.invite,
// then MSC3898 data-channel messages) get m.call.answer and each other's
// audio and video; one hangs up and the other's metadata drops its stream;
// SIGTERM hangs up the remaining call (user_hangup) and exits 0.
func TestGroupCallThroughBinary(t *testing.T) {
	log := &LockedBuffer{}
	proc, err := Start(context.Background(), Options{Bin: binary(t), DataDir: t.TempDir(),
		Args: []string{"--log-format", "json"}, Log: log})
	if err != nil {
		t.Fatalf("%v\nserver log:\n%s", err, tail(log.String(), 4000))
	}
	t.Cleanup(func() {
		proc.Kill()
		if t.Failed() {
			t.Logf("server log:\n%s", tail(log.String(), 8000))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	alice, bob := newClient(t, proc.ClientURL()), newClient(t, proc.ClientURL())
	register(t, alice, "alice", "alice password")
	register(t, bob, "bob", "bob password")
	server := alice.UserID.Homeserver()
	focus := callclient.Focus{UserID: "@switchboard:" + server, DeviceID: "SFU"}
	if want := `"msg":"group calls: focus ` + focus.UserID + ` device SFU"`; !strings.Contains(log.String(), want) {
		t.Fatalf("server log does not announce the focus (%s)", want)
	}

	const conf = "weekly"
	room, err := callclient.CreateCallRoom(ctx, alice, conf, focus)
	if err != nil {
		t.Fatal(err)
	}
	everyoneElse := func(self string) func(string) bool {
		return func(u string) bool { return u != self }
	}
	pa, err := callclient.Join(ctx, alice, room, conf, focus, callclient.Options{Publish: true,
		SubscribeTo: everyoneElse(string(alice.UserID))})
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	pb, err := callclient.Join(ctx, bob, room, conf, focus, callclient.Options{Publish: true,
		SubscribeTo: everyoneElse(string(bob.UserID))})
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	for _, p := range []*callclient.Participant{pa, pb} {
		if err := p.Invite(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*callclient.Participant{pa, pb} {
		if err := p.WaitAnswered(ctx); err != nil {
			t.Fatalf("%s: %v", p.UserID(), err)
		}
	}
	receives := func(p, from *callclient.Participant) func() bool {
		return func() bool { a, v := p.Received(from.StreamID()); return a >= 10 && v >= 10 }
	}
	testkit.Eventually(t, 30*time.Second, "bob receiving alice's audio and video", receives(pb, pa))
	testkit.Eventually(t, 30*time.Second, "alice receiving bob's audio and video", receives(pa, pb))
	ph := pb.Phases()
	for name, at := range map[string]time.Time{"invite sent": ph.InviteSent, "answered": ph.Answered,
		"ICE connected": ph.ICEConnected, "DTLS connected": ph.DTLSConnected, "first RTP": ph.FirstRTP,
		"first video": ph.FirstVideo} {
		if at.IsZero() {
			t.Errorf("bob's call setup never reached %s", name)
		}
	}
	if s, ok := pa.Metadata()[pb.StreamID()]; !ok || s.UserID != string(bob.UserID) || s.DeviceID != pb.DeviceID() {
		t.Errorf("alice's metadata for bob's stream: %+v (present %v)", s, ok)
	}

	// Bob leaves: alice's metadata and connection drop his stream.
	if err := pb.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "alice to lose bob's stream", func() bool {
		_, inMeta := pa.Metadata()[pb.StreamID()]
		return !inMeta && !pa.OfferedTrack("bob-video") && !pa.OfferedTrack("bob-audio")
	})
	pb.Close()

	// SIGTERM: the focus hangs up alice's call before the server stops.
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pa.HungUp():
		if r := pa.HangupReason(); r != "user_hangup" {
			t.Errorf("hangup at shutdown: reason %q, want user_hangup", r)
		}
	case <-ctx.Done():
		t.Fatal("no hangup from the focus at shutdown")
	}
	if code, err := proc.Wait(30 * time.Second); err != nil || code != 0 {
		t.Errorf("exit after SIGTERM: code %d, %v", code, err)
	}
	for _, p := range []*callclient.Participant{pa, pb} {
		for _, err := range p.Errs() {
			t.Errorf("%s: %v", p.UserID(), err)
		}
	}
}
