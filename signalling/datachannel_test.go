package signalling

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestDataChannel exercises MSC3898's data-channel messages with manual
// subscriptions (as switchboard serve runs the SFU): nothing is received
// until m.call.track_subscription asks for it, an unsubscription
// renegotiates the track away (server m.call.negotiate offers on the data
// channel), the focus pings and answers pings, a client's
// m.call.sdp_stream_metadata_changed (by data channel and to-device) and
// a client m.call.negotiate offer adding a screen share reach the others'
// metadata, and the speaker messages name the one who speaks.
func TestDataChannel(t *testing.T) {
	e := newEnv(t, envOpts{focus: func(c *FocusConfig) { c.PingInterval = 100 * time.Millisecond }})
	owner := e.user(t, "owner")
	const conf = "conf1"
	room := e.callRoom(t, owner, conf)
	alice := e.participant(t, "alice", room, conf, partOpts{level: 10}) // speaking
	bob := e.participant(t, "bob", room, conf, partOpts{})              // silent
	alice.invite()
	bob.invite()
	testkit.Eventually(t, testTimeout, "answers", func() bool { return alice.isAnswered() && bob.isAnswered() })
	testkit.Eventually(t, testTimeout, "bob's metadata for alice", func() bool {
		s, ok := bob.metaStream("alice-stream")
		return ok && s.UserID == string(alice.cli.UserID) && len(s.Tracks) == 2
	})
	if bob.offeredTrack("alice-audio") || bob.offeredTrack("alice-video") {
		t.Fatal("bob was sent alice's tracks without subscribing")
	}

	// Subscribe: the focus renegotiates on the data channel and media flows.
	bob.sendDC(TypeTrackSubscription, map[string]any{"subscribe": []any{
		map[string]any{"stream_id": "alice-stream", "track_id": "alice-audio"},
		map[string]any{"stream_id": "alice-stream", "track_id": "alice-video", "width": 320, "height": 180},
	}})
	testkit.Eventually(t, testTimeout, "bob receiving alice", func() bool { return bob.receivesFrom(alice) })
	if n := bob.dcCount(TypeNegotiate); n == 0 {
		t.Error("the focus's renegotiation did not come on the data channel")
	}
	if alice.offeredTrack("bob-audio") || alice.offeredTrack("bob-video") {
		t.Error("alice, who subscribed to nothing, was sent bob's tracks")
	}

	// Unsubscribe from the video: renegotiated away, audio keeps flowing.
	bob.sendDC(TypeTrackSubscription, map[string]any{"unsubscribe": []any{
		map[string]any{"stream_id": "alice-stream", "track_id": "alice-video"}}})
	testkit.Eventually(t, testTimeout, "alice's video to leave bob's connection", func() bool { return !bob.offeredTrack("alice-video") })
	audio := bob.received("alice-audio")
	testkit.Eventually(t, testTimeout, "alice's audio still flowing", func() bool { return bob.received("alice-audio") > audio+10 })

	// Pings both ways.
	testkit.Eventually(t, testTimeout, "pings from the focus", func() bool { return bob.dcCount(TypePing) > 0 })
	bob.sendDC(TypePing, struct{}{})
	testkit.Eventually(t, testTimeout, "the focus's pong", func() bool { return bob.dcCount(TypePong) > 0 })

	// Speakers: alice sends a loud audio level, bob silence.
	testkit.Eventually(t, testTimeout, "bob told that alice speaks", func() bool {
		bob.mu.Lock()
		defer bob.mu.Unlock()
		s := bob.speakers
		return len(s.Active) == 1 && s.Active[0].UserID == string(alice.cli.UserID) &&
			s.Dominant != nil && s.Dominant.DeviceID == string(alice.cli.DeviceID)
	})

	// Mute state: by data channel, then to-device.
	alice.sendDC(TypeMetadataChanged, map[string]any{"sdp_stream_metadata": map[string]any{
		"alice-stream": map[string]any{"purpose": "m.usermedia", "audio_muted": true, "video_muted": false}}})
	testkit.Eventually(t, testTimeout, "bob to see alice muted", func() bool {
		s, ok := bob.metaStream("alice-stream")
		return ok && s.AudioMuted && !s.VideoMuted
	})
	c := alice.callFields()
	c["sdp_stream_metadata"] = map[string]any{
		"alice-stream": map[string]any{"purpose": "m.usermedia", "audio_muted": false, "video_muted": true}}
	alice.send(TypeMetadataChanged, c)
	testkit.Eventually(t, testTimeout, "bob to see alice's camera off", func() bool {
		s, ok := bob.metaStream("alice-stream")
		return ok && !s.AudioMuted && s.VideoMuted
	})

	// Alice shares her screen: her own m.call.negotiate offer on the data
	// channel, answered there; bob's metadata gets the new stream.
	alice.addScreenShare()
	testkit.Eventually(t, testTimeout, "bob's metadata for alice's screen", func() bool {
		s, ok := bob.metaStream("alice-screen")
		return ok && s.Purpose == "m.screenshare" && s.UserID == string(alice.cli.UserID) &&
			s.Tracks["alice-screen-video"].Kind == "video"
	})
	testkit.Eventually(t, testTimeout, "alice's offer answered", func() bool {
		return alice.pc.SignalingState() == webrtc.SignalingStateStable && alice.dcCount(TypeNegotiate) > 0
	})
}

func (p *participant) dcCount(typ string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dcMsgs[typ]
}

// addScreenShare adds a second video track in its own stream and offers it
// to the focus with m.call.negotiate on the data channel.
func (p *participant) addScreenShare() {
	t := p.t
	t.Helper()
	if _, err := p.rtc.AddVideoTrack(p.name+"-screen-video", p.name+"-screen"); err != nil {
		t.Fatal(err)
	}
	// Offer waits for a server offer in flight to be answered first.
	sdp := p.offer()
	p.sendDC(TypeNegotiate, map[string]any{
		"description": map[string]any{"type": "offer", "sdp": sdp},
		"sdp_stream_metadata": map[string]any{
			p.name + "-stream": map[string]any{"purpose": "m.usermedia", "audio_muted": false, "video_muted": true},
			p.name + "-screen": map[string]any{"purpose": "m.screenshare"},
		},
	})
}
