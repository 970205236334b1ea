package sfu

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

func TestConfigValidation(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("missing UDPMux: %v", err)
	}
	for name, mod := range map[string]func(*Config){
		"bad advertised IP": func(c *Config) { c.AdvertisedIPs = []string{"not-an-ip"} },
		"negative limit":    func(c *Config) { c.MaxConferences = -1 },
		"min above max":     func(c *Config) { c.MinBitrate, c.MaxBitrate = 2e6, 1e6 },
	} {
		conn := newTestSFU(t, nil)
		_ = conn.Close()
		c := Config{UDPMux: conn.cfg.UDPMux}
		mod(&c)
		if _, err := New(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err %v, want ErrInvalidConfig", name, err)
		}
	}
}

// TestLimits: conferences per node, participants per conference and
// tracks per participant are enforced with their errors.
func TestLimits(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	s := newTestSFU(t, func(c *Config) {
		c.MaxConferences, c.MaxParticipantsPerConference, c.MaxTracksPerParticipant = 1, 2, 1
	})
	defer s.Close()
	a := joinClient(t, s, "c1", "a", clientOpts{audio: true, video: true})
	defer a.close()
	b := joinClient(t, s, "c1", "b", clientOpts{})
	defer b.close()

	pc, err := clientAPI(t, nil, false).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.CreateDataChannel("x", nil); err != nil {
		t.Fatal(err)
	}
	offer, _ := pc.CreateOffer(nil)
	if _, _, err := s.Join(context.Background(), "c1", "c", offer.SDP, Handler{}); !errors.Is(err, ErrConferenceFull) {
		t.Errorf("third participant: %v, want ErrConferenceFull", err)
	}
	if _, _, err := s.Join(context.Background(), "c2", "c", offer.SDP, Handler{}); !errors.Is(err, ErrTooManyConferences) {
		t.Errorf("second conference: %v, want ErrTooManyConferences", err)
	}
	if _, _, err := s.Join(context.Background(), "c1", "a", offer.SDP, Handler{}); err == nil {
		t.Error("duplicate participant ID accepted")
	}
	// a publishes audio and video but may publish only one track.
	testkit.Eventually(t, testTimeout, "b receiving one of a's tracks", func() bool {
		ra, rv := b.track("a-audio"), b.track("a-video")
		return (ra != nil && ra.Packets.Load() > 10) || (rv != nil && rv.Packets.Load() > 10)
	})
	b.mu.Lock()
	n := len(b.tracks)
	b.mu.Unlock()
	if n != 1 {
		t.Errorf("b sees %d tracks of a, want 1 (limit)", n)
	}
}

// TestRenegotiationAndDataChannel: a client adds a track after joining
// (client offer), then removes it; the data channel carries messages both
// ways; the client restarts ICE and stays in the call.
func TestRenegotiationAndDataChannel(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	s := newTestSFU(t, nil)
	defer s.Close()
	a := joinClient(t, s, "r", "a", clientOpts{audio: true})
	defer a.close()
	b := joinClient(t, s, "r", "b", clientOpts{audio: true})
	defer b.close()
	testkit.Eventually(t, testTimeout, "b hearing a", func() bool { r := b.track("a-audio"); return r != nil && r.Packets.Load() > 10 })

	// a adds a screen share track: client-initiated renegotiation.
	snd, err := a.rtc.AddVideoTrack("a-screen", "a-screenshare")
	if err != nil {
		t.Fatal(err)
	}
	a.renegotiate(t, false)
	testkit.Eventually(t, testTimeout, "b receiving a's screen share", func() bool {
		r := b.track("a-screen")
		return r != nil && r.Packets.Load() > 10 && r.StreamID == "a-screenshare"
	})

	// a stops sharing: b's receiver ends.
	if err := a.pc.RemoveTrack(snd); err != nil {
		t.Fatal(err)
	}
	a.renegotiate(t, false)
	testkit.Eventually(t, testTimeout, "b losing a's screen share", func() bool { return b.track("a-screen").Ended.Load() })
	testkit.Eventually(t, testTimeout, "track list without the screen share", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.tracks) == 1
	})

	// Data channel, both ways.
	testkit.Eventually(t, testTimeout, "data channel open", func() bool { return a.p.SendData([]byte(`{"type":"m.call.ping"}`)) == nil })
	select {
	case m := <-a.msg:
		if string(m) != `{"type":"m.call.ping"}` {
			t.Errorf("client got %q", m)
		}
	case <-time.After(testTimeout):
		t.Fatal("no data channel message from the SFU")
	}
	if err := a.rtc.SendData([]byte(`{"type":"m.call.pong"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-a.srvMsg:
		if string(m) != `{"type":"m.call.pong"}` {
			t.Errorf("SFU got %q", m)
		}
	case <-time.After(testTimeout):
		t.Fatal("no data channel message from the client")
	}

	// ICE restart: the participant stays and media keeps flowing.
	a.renegotiate(t, true)
	before := b.track("a-audio").Packets.Load()
	testkit.Eventually(t, testTimeout, "media after ICE restart", func() bool { return b.track("a-audio").Packets.Load() > before+20 })
	if a.pc.ICEConnectionState() != webrtc.ICEConnectionStateConnected &&
		a.pc.ICEConnectionState() != webrtc.ICEConnectionStateCompleted {
		t.Errorf("ICE state after restart: %s", a.pc.ICEConnectionState())
	}
}

// renegotiate sends a client offer (optionally an ICE restart) and applies
// the answer.
func (c *testClient) renegotiate(t *testing.T, iceRestart bool) {
	t.Helper()
	offer, err := c.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: iceRestart})
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	ans, err := c.p.HandleOffer(context.Background(), c.pc.LocalDescription().SDP)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans}); err != nil {
		t.Fatal(err)
	}
}

// TestActiveSpeakerAndMetrics: the loud participant becomes the dominant
// speaker for everyone; PLIs from a subscriber reach the publisher
// throttled; the metrics count what happened.
func TestActiveSpeakerAndMetrics(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	reg := prometheus.NewRegistry()
	s := newTestSFU(t, func(c *Config) { c.Registerer = reg; c.AllocationInterval = 100 * time.Millisecond })
	defer s.Close()
	loud := joinClient(t, s, "sp", "loud", clientOpts{audio: true, video: true, level: 25})
	defer loud.close()
	quiet := joinClient(t, s, "sp", "quiet", clientOpts{audio: true, level: 127})
	defer quiet.close()
	for _, c := range []*testClient{loud, quiet} {
		testkit.Eventually(t, testTimeout, c.id+" told the dominant speaker", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.dominant == "loud"
		})
	}
	// The audio level is forwarded too.
	testkit.Eventually(t, testTimeout, "quiet receiving loud's video", func() bool {
		r := quiet.track("loud-video")
		return r != nil && r.Packets.Load() > 10
	})

	// quiet asks for a key frame 40 times in 2 s; loud must see at most
	// one PLI per second (plus the ones already sent).
	var ssrc uint32
	for _, tr := range quiet.pc.GetTransceivers() {
		if tr.Kind() == webrtc.RTPCodecTypeVideo && tr.Receiver() != nil && tr.Receiver().Track() != nil {
			ssrc = uint32(tr.Receiver().Track().SSRC())
		}
	}
	start := loud.rtc.PLIs()
	began := time.Now()
	for i := 0; i < 40; i++ {
		_ = quiet.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
		time.Sleep(50 * time.Millisecond)
	}
	got := loud.rtc.PLIs() - start
	allowed := int64(time.Since(began)/time.Second) + 2
	t.Logf("40 PLIs from the subscriber in %v became %d PLIs at the publisher", time.Since(began).Round(time.Millisecond), got)
	if got < 1 || got > allowed {
		t.Errorf("publisher got %d PLIs, want 1..%d", got, allowed)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				vals[mf.GetName()] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				vals[mf.GetName()] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				vals[mf.GetName()] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for name, min := range map[string]float64{
		"switchboard_sfu_conferences": 1, "switchboard_sfu_participants": 2, "switchboard_sfu_tracks": 3,
		"switchboard_sfu_forwarded_packets_total": 10, "switchboard_sfu_forwarded_bytes_total": 100,
		"switchboard_sfu_keyframe_requests_total": 1, "switchboard_sfu_estimated_bandwidth_bps": 1,
	} {
		if vals[name] < min {
			t.Errorf("%s = %v, want >= %v", name, vals[name], min)
		}
	}
}

// TestPeerGone: a client that vanishes without leaving (its side cut by
// closing its PeerConnection) is removed, and its tracks with it.
func TestPeerGone(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	s := newTestSFU(t, nil)
	defer s.Close()
	a := joinClient(t, s, "g", "a", clientOpts{audio: true})
	b := joinClient(t, s, "g", "b", clientOpts{audio: true})
	defer b.close()
	testkit.Eventually(t, testTimeout, "b hearing a", func() bool { r := b.track("a-audio"); return r != nil && r.Packets.Load() > 5 })
	a.close()
	select {
	case err := <-a.closed:
		if !errors.Is(err, ErrPeerClosed) && !errors.Is(err, ErrICEFailed) {
			t.Errorf("close reason %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("participant not removed after its client went away")
	}
	testkit.Eventually(t, testTimeout, "b losing a's audio", func() bool { return b.track("a-audio").Ended.Load() })
}

// TestSlowSubscriberDoesNotBlock: a subscriber whose send queue is full
// loses packets; the publisher's receive path never waits.
func TestSlowSubscriberDoesNotBlock(t *testing.T) {
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &Participant{sfu: &SFU{m: m}, queue: make(chan sendItem, 8)}
	done := make(chan struct{})
	go func() {
		for i := 0; i < 10000; i++ {
			p.enqueue(sendItem{seq: uint16(i)})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("enqueue blocked on a full queue")
	}
	var d = counterValue(m.dropped)
	if d != 10000-8 {
		t.Errorf("dropped %v packets, want %d", d, 10000-8)
	}
}

// TestCodecs: H.264, VP9 and AV1 video is forwarded like VP8: the
// subscriber gets packets once the SFU saw a key frame of that codec.
func TestCodecs(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	s := newTestSFU(t, nil)
	defer s.Close()
	for _, mime := range []string{webrtc.MimeTypeH264, webrtc.MimeTypeVP9, webrtc.MimeTypeAV1} {
		name := strings.ToLower(strings.TrimPrefix(mime, "video/"))
		pub := joinClient(t, s, "codecs", name, clientOpts{video: true, videoCodec: mime})
		defer pub.close()
	}
	sub := joinClient(t, s, "codecs", "sub", clientOpts{})
	defer sub.close()
	for _, name := range []string{"h264", "vp9", "av1"} {
		testkit.Eventually(t, testTimeout, "receiving "+name, func() bool {
			r := sub.track(name + "-video")
			return r != nil && r.Packets.Load() > 20
		})
	}
}

// TestICETCP: a client that can only use TCP connects through the ICE-TCP
// listener (RFC 6544) and receives media.
func TestICETCP(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newTestSFU(t, func(c *Config) { c.TCPListener = ln })
	defer s.Close()
	a := joinClient(t, s, "tcp", "a", clientOpts{audio: true})
	defer a.close()
	b := joinClient(t, s, "tcp", "b", clientOpts{tcp: true})
	defer b.close()
	testkit.Eventually(t, testTimeout, "TCP client receiving audio", func() bool {
		r := b.track("a-audio")
		return r != nil && r.Packets.Load() > 20
	})
	pair, err := b.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("no selected pair: %v", err)
	}
	if pair.Local.Protocol != webrtc.ICEProtocolTCP {
		t.Errorf("selected pair uses %s, want tcp", pair.Local.Protocol)
	}
}

// TestAdvertisedIP: behind a 1:1 NAT the answer carries the advertised
// address instead of the local one. (The client does not apply it, so no
// packet is sent to that address.)
func TestAdvertisedIP(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	s := newTestSFU(t, func(c *Config) { c.AdvertisedIPs = []string{"203.0.113.7"} })
	defer s.Close()
	pc, err := clientAPI(t, nil, false).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.CreateDataChannel("x", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Join(context.Background(), "nat", "x", "v=0 garbage", Handler{}); !errors.Is(err, ErrInvalidSDP) {
		t.Errorf("garbage offer: %v, want ErrInvalidSDP", err)
	}
	if st := s.Stats(); st.Conferences != 0 || st.Participants != 0 {
		t.Errorf("a failed join left %+v behind", st)
	}
	p, answer, err := s.Join(context.Background(), "nat", "a", offer.SDP, Handler{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !strings.Contains(answer, "203.0.113.7") || strings.Contains(answer, "127.0.0.1") {
		t.Errorf("answer candidates do not advertise only 203.0.113.7:\n%s", answer)
	}
}

// TestGlare: the client sends an offer while a server offer is still
// unanswered; the client's offer wins (the SFU rolls back), and the SFU
// offers again afterwards, so the client still gets the new track.
func TestGlare(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	s := newTestSFU(t, nil)
	defer s.Close()
	a := joinClient(t, s, "glare", "a", clientOpts{audio: true})
	defer a.close()
	b := joinClient(t, s, "glare", "b", clientOpts{})
	defer b.close()
	testkit.Eventually(t, testTimeout, "b hearing a", func() bool { r := b.track("a-audio"); return r != nil && r.Packets.Load() > 5 })

	b.hold.Store(true)
	c := joinClient(t, s, "glare", "c", clientOpts{audio: true})
	defer c.close()
	testkit.Eventually(t, testTimeout, "server offer for c's track", func() bool { return len(b.held) > 0 })
	b.hold.Store(false)
	// b offers too: the SFU refuses, its own offer stays pending.
	offer, err := b.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.p.HandleOffer(context.Background(), offer.SDP); !errors.Is(err, ErrGlare) {
		t.Fatalf("colliding client offer: %v, want ErrGlare", err)
	}
	// The unanswered offer can be fetched again (a lost message).
	held := <-b.held
	if again, ok := b.p.PendingOffer(); !ok || again != held {
		t.Errorf("PendingOffer = %v, want the held offer", ok)
	}
	// b answers the server offer (the polite side's rollback), then offers
	// again; both negotiations complete.
	b.answerOffer(t, held)
	if _, ok := b.p.PendingOffer(); ok {
		t.Error("PendingOffer after the answer")
	}
	testkit.Eventually(t, testTimeout, "b hearing c after glare", func() bool { r := b.track("c-audio"); return r != nil && r.Packets.Load() > 5 })
	b.renegotiate(t, false)
	before := b.track("c-audio").Packets.Load()
	testkit.Eventually(t, testTimeout, "media after the client's offer", func() bool { return b.track("c-audio").Packets.Load() > before+5 })
}

// TestICEFailure: a client whose network disappears (every packet to and
// from it dropped on a vnet router) is removed once ICE fails; the others
// lose its tracks and every goroutine it had ends.
func TestICEFailure(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, testkit.PionClosing) })
	var cut atomic.Bool
	nets := testWAN(t, wanConfig{
		ips: map[string][]string{"sfu": {"192.0.2.1"}, "a": {"192.0.2.2"}, "b": {"192.0.2.3"}},
		filter: func(c vnet.Chunk) bool {
			if !cut.Load() {
				return true
			}
			src, dst := c.SourceAddr().String(), c.DestinationAddr().String()
			return !strings.HasPrefix(src, "192.0.2.2:") && !strings.HasPrefix(dst, "192.0.2.2:")
		},
	})
	s := sfuOn(t, nets["sfu"], Config{ICEDisconnectedTimeout: 500 * time.Millisecond, ICEFailedTimeout: time.Second})
	defer s.Close()
	a := joinClient(t, s, "fail", "a", clientOpts{audio: true, video: true, net: nets["a"]})
	defer a.close()
	b := joinClient(t, s, "fail", "b", clientOpts{audio: true, net: nets["b"]})
	defer b.close()
	testkit.Eventually(t, testTimeout, "b receiving a", func() bool { r := b.track("a-video"); return r != nil && r.Packets.Load() > 10 })

	cut.Store(true)
	select {
	case err := <-a.closed:
		if !errors.Is(err, ErrICEFailed) {
			t.Errorf("close reason %v, want ErrICEFailed", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("participant with a dead network not removed")
	}
	testkit.Eventually(t, testTimeout, "b losing a's tracks", func() bool {
		return b.track("a-audio").Ended.Load() && b.track("a-video").Ended.Load()
	})
	conf := b.p.Conference()
	conf.mu.Lock()
	left := len(conf.tracks)
	conf.mu.Unlock()
	if left != 1 {
		t.Errorf("%d tracks left in the conference, want b's 1", left)
	}
}

// answerOffer applies a server offer and sends the answer.
func (c *testClient) answerOffer(t *testing.T, sdp string) {
	t.Helper()
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		t.Fatal(err)
	}
	ans, err := c.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	if err := c.p.HandleAnswer(ans.SDP); err != nil {
		t.Fatal(err)
	}
}

// TestManualSubscriptions: without AutoSubscribe a participant receives
// only the tracks it subscribes to (MSC3401 m.call.track_subscription),
// learns about the others through OnTracks, and loses a track it
// unsubscribes from.
func TestManualSubscriptions(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	s := newTestSFU(t, func(c *Config) { c.AutoSubscribe = false })
	defer s.Close()
	a := joinClient(t, s, "m", "a", clientOpts{audio: true, video: true})
	defer a.close()
	b := joinClient(t, s, "m", "b", clientOpts{})
	defer b.close()
	testkit.Eventually(t, testTimeout, "b told about a's tracks", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.tracks) == 2
	})
	if b.track("a-audio") != nil || b.track("a-video") != nil {
		t.Fatal("b receives tracks it did not subscribe to")
	}
	if err := b.p.UpdateSubscriptions([]Subscription{{TrackID: "a-video", MaxWidth: 320, MaxHeight: 180}}, nil); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, testTimeout, "b receiving a-video", func() bool { r := b.track("a-video"); return r != nil && r.Packets.Load() > 10 })
	if b.track("a-audio") != nil {
		t.Error("b receives a-audio without subscribing")
	}
	if err := b.p.UpdateSubscriptions(nil, []string{"a-video"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, testTimeout, "b's a-video receiver ending", func() bool { return b.track("a-video").Ended.Load() })
	// A subscription to a track published later takes effect then.
	if err := b.p.UpdateSubscriptions([]Subscription{{TrackID: "c-audio"}}, nil); err != nil {
		t.Fatal(err)
	}
	c := joinClient(t, s, "m", "c", clientOpts{audio: true})
	defer c.close()
	testkit.Eventually(t, testTimeout, "b receiving c-audio", func() bool { r := b.track("c-audio"); return r != nil && r.Packets.Load() > 10 })
}
