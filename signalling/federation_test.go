package signalling

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver"
	"github.com/switchboard-chat/switchboard/internal/testkit"
	"github.com/switchboard-chat/switchboard/sfu"
)

// This file runs a group call across federation: server A hosts the room
// and the SFU focus, server B's users join A's room and reach the focus
// by to-device messages that cross federation as m.direct_to_device EDUs
// (spec: Server-Server API, "Send-to-device messaging"), and the focus's
// answers come back the same way.

// fedTimeout bounds each wait in the federation test: every step there
// goes through the outbound federation queue of one server or both.
const fedTimeout = 60 * time.Second

// fedServer is a homeserver with a client listener and a TLS federation
// listener on loopback, named "127.0.0.1:<federation port>" so peers
// reach it without any name lookup.
type fedServer struct {
	hs   *homeserver.Server
	name string
	url  string
}

// startFedServer starts a federating homeserver on SQLite in a temporary
// directory; it is shut down when the test ends.
func startFedServer(t *testing.T) *fedServer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fedLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	name := fedLn.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	hs, err := homeserver.New(ctx, homeserver.Config{
		ServerName:   name,
		Database:     filepath.Join(t.TempDir(), "hs.db"),
		Registration: homeserver.RegistrationOpen,
		SigningKey:   key,
		KeyID:        "ed25519:fed",
		RateLimit:    homeserver.RateLimitConfig{Disabled: true},
		Federation: homeserver.FederationConfig{
			SkipTLSVerify: true,
			AllowNetworks: []string{"127.0.0.1/32"},
			RetryMin:      100 * time.Millisecond,
			RetryMax:      time.Second,
			// Server names are IP literals; a lookup that slips through
			// anyway fails here instead of leaving the machine.
			Resolver: &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
				return nil, errors.New("test resolver: no DNS")
			}},
		},
	}, testLogger(), nil)
	if err != nil {
		_ = fedLn.Close()
		t.Fatalf("homeserver.New: %v", err)
	}
	fedSrv := &httptest.Server{Listener: fedLn, Config: &http.Server{Handler: hs.FederationHandler()}}
	fedSrv.StartTLS()
	cliSrv := httptest.NewServer(hs.ClientHandler())
	t.Cleanup(func() {
		hs.Shutdown()
		fedSrv.Close()
		cliSrv.Close()
		if err := hs.Close(); err != nil {
			t.Errorf("homeserver %s Close: %v", name, err)
		}
	})
	return &fedServer{hs: hs, name: name, url: cliSrv.URL}
}

// newFedEnvs starts servers A and B federating with each other, and an
// SFU and a running focus on A. The env of A is like newEnv's; the env of
// B registers its users on B and points them at A's focus.
func newFedEnvs(t *testing.T) (a, b *env, nameA string) {
	t.Helper()
	// Registered first, so it runs after every other cleanup.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore, testkit.PionClosing) })
	log := testLogger()
	srvA, srvB := startFedServer(t), startFedServer(t)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sfuReg, focusReg := prometheus.NewRegistry(), prometheus.NewRegistry()
	s, err := sfu.New(sfu.Config{UDPMux: conn, AutoSubscribe: true, Logger: log, Registerer: sfuReg})
	if err != nil {
		_ = conn.Close()
		t.Fatal(err)
	}
	f, err := NewFocus(FocusConfig{Homeserver: srvA.hs, SFU: s, Logger: log, Registerer: focusReg,
		CheckInterval: 200 * time.Millisecond, InviteBurst: 20, InviteRate: 5})
	if err != nil {
		_ = s.Close()
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := f.Close(); err != nil {
			t.Errorf("focus Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("sfu Close: %v", err)
		}
	})
	a = &env{t: t, hs: srvA.hs, url: srvA.url, sfu: s, focus: f, sfuReg: sfuReg, focusReg: focusReg, log: log}
	b = &env{t: t, hs: srvB.hs, url: srvB.url, sfu: s, focus: f, sfuReg: sfuReg, focusReg: focusReg, log: log}
	return a, b, srvA.name
}

// remoteParticipant registers name on B, has owner (on A) invite it to
// room, joins it through A and publishes its call membership; it returns
// once A holds the join and the membership, so the focus, which checks
// both, will accept the participant's invite.
func remoteParticipant(t *testing.T, a, b *env, nameA string, owner *mautrix.Client, name string,
	room id.RoomID, conf string) *participant {
	t.Helper()
	ctx := context.Background()
	p := b.participant(t, name, room, conf, partOpts{noJoin: true, noMember: true})
	if _, err := owner.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: p.cli.UserID}); err != nil {
		t.Fatalf("invite %s: %v", p.cli.UserID, err)
	}
	if _, err := p.cli.JoinRoom(ctx, string(room), &mautrix.ReqJoinRoom{Via: []string{nameA}}); err != nil {
		t.Fatalf("%s join through %s: %v", name, nameA, err)
	}
	p.publishMember(string(p.cli.DeviceID), time.Now().Add(time.Hour))
	testkit.Eventually(t, fedTimeout, "A to see "+name+"'s join and call membership", func() bool {
		m, err := a.hs.Membership(ctx, string(room), string(p.cli.UserID))
		if err != nil || m != "join" {
			return false
		}
		_, ok, err := a.hs.StateContent(ctx, string(room), TypeCallMemberUnstable, string(p.cli.UserID))
		return err == nil && ok
	})
	return p
}

// TestFederatedGroupCall runs a group call on A's focus with two users of
// A and two of B: each receives the other three's audio and video and
// knows whose stream is whose; then a user of B hangs up (the hangup
// crosses federation) and the three others' connections drop its tracks
// while their media keeps flowing; the conference ends when all have
// left.
func TestFederatedGroupCall(t *testing.T) {
	a, b, nameA := newFedEnvs(t)
	owner := a.user(t, "owner")
	const conf = "fedconf"
	room := a.callRoom(t, owner, conf)

	ps := []*participant{
		a.participant(t, "alice", room, conf, partOpts{}),
		a.participant(t, "bob", room, conf, partOpts{}),
		remoteParticipant(t, a, b, nameA, owner, "carol", room, conf),
		remoteParticipant(t, a, b, nameA, owner, "dave", room, conf),
	}
	for _, p := range ps[2:] {
		if _, server, _ := p.cli.UserID.Parse(); server == nameA || server == "" {
			t.Fatalf("%s is %s, not a user of B", p.name, p.cli.UserID)
		}
	}
	for _, p := range ps {
		p.invite()
	}
	for _, p := range ps {
		testkit.Eventually(t, fedTimeout, p.name+" answered", p.isAnswered)
	}
	if n := a.focus.Calls(); n != 4 {
		t.Fatalf("focus has %d calls, want 4", n)
	}
	for _, p := range ps {
		var others []*participant
		for _, o := range ps {
			if o != p {
				others = append(others, o)
			}
		}
		testkit.Eventually(t, fedTimeout, p.name+" receiving the others", func() bool { return p.receivesFrom(others...) })
	}
	if got := gauge(t, a.sfuReg, "switchboard_sfu_conferences"); got != 1 {
		t.Fatalf("%v conferences, want 1", got)
	}
	// The focus sends server offers and stream metadata on the data
	// channel once it is open, by to-device before; a metadata message
	// sent by to-device before the channel opened can reach the client,
	// through federation, after newer ones on the channel and replace
	// them. So each participant first drains its to-device path (barrier)
	// and then alice and bob republish their metadata on the data
	// channel, which makes the focus push everyone's metadata again there.
	for _, p := range ps {
		barrier(t, p)
	}
	for _, p := range ps[:2] {
		p.sendDC(TypeMetadataChanged, map[string]any{"sdp_stream_metadata": map[string]any{
			p.name + "-stream": map[string]any{"purpose": "m.usermedia", "audio_muted": false, "video_muted": false}}})
	}
	// Everyone knows whose stream is whose, users of B by their B IDs.
	for _, p := range ps {
		for _, o := range ps {
			if o == p {
				continue
			}
			testkit.Eventually(t, fedTimeout, p.name+" metadata for "+o.name, func() bool {
				s, ok := p.metaStream(o.name + "-stream")
				return ok && s.UserID == string(o.cli.UserID) && s.DeviceID == string(o.cli.DeviceID) &&
					s.Tracks[o.name+"-audio"].Kind == "audio" && s.Tracks[o.name+"-video"].Kind == "video"
			})
		}
	}

	// Dave, a user of B, hangs up: his hangup reaches the focus through
	// federation; the others are renegotiated without his tracks.
	dave := ps[3]
	dave.hangup()
	testkit.Eventually(t, fedTimeout, "focus to drop dave", func() bool { return a.focus.Calls() == 3 })
	dave.close()
	rest := ps[:3]
	for _, p := range rest {
		testkit.Eventually(t, fedTimeout, p.name+" renegotiated without dave", func() bool {
			_, inMeta := p.metaStream("dave-stream")
			return !inMeta && !p.offeredTrack("dave-audio") && !p.offeredTrack("dave-video")
		})
	}
	// The three, across both servers, still hear and see each other.
	base := map[*participant]map[string]int64{}
	for _, p := range rest {
		base[p] = map[string]int64{}
		for _, o := range rest {
			if o != p {
				base[p][o.name+"-audio"] = p.received(o.name + "-audio")
				base[p][o.name+"-video"] = p.received(o.name + "-video")
			}
		}
	}
	for _, p := range rest {
		for tr, n := range base[p] {
			testkit.Eventually(t, fedTimeout, p.name+" still receiving "+tr, func() bool { return p.received(tr) > n+10 })
		}
	}

	for _, p := range rest {
		p.hangup()
	}
	testkit.Eventually(t, fedTimeout, "all calls to end", func() bool { return a.focus.Calls() == 0 })
	testkit.Eventually(t, fedTimeout, "the conference to end", func() bool {
		return gauge(t, a.sfuReg, "switchboard_sfu_conferences") == 0 &&
			gauge(t, a.sfuReg, "switchboard_sfu_participants") == 0
	})
	for _, p := range ps {
		if r, ok := p.hangupReason(p.callID); ok {
			t.Errorf("%s hung up himself but got a hangup (%q)", p.name, r)
		}
	}
}

// barrier returns once every to-device message the focus sent p before
// has been handled by p: p sends an invite without an offer, which the
// focus refuses with a to-device hangup queued behind them (the
// federation queue, the homeserver's to-device stream and p's sync loop
// all keep order), and waits for that hangup.
func barrier(t *testing.T, p *participant) {
	t.Helper()
	callID := "barrier-" + p.name
	p.send(TypeInvite, map[string]any{
		"version": "1", "call_id": callID, "party_id": "party-" + p.name, "conf_id": p.conf,
		"room_id": string(p.room), "device_id": string(p.cli.DeviceID), "sender_session_id": p.session,
		"dest_session_id": "", "seq": 0, "lifetime": 30000,
	})
	testkit.Eventually(t, fedTimeout, p.name+"'s barrier hangup", func() bool {
		r, ok := p.hangupReason(callID)
		return ok && r == ReasonInvalid
	})
}
