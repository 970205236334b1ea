package sfu

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/internal/testkit"
	"github.com/switchboard-chat/switchboard/internal/testkit/rtcclient"
	"github.com/switchboard-chat/switchboard/media"
)

// fakeBindContext is what pion hands a TrackLocal in Bind: the negotiated
// codec, SSRC and write stream.
type fakeBindContext struct {
	w webrtc.TrackLocalWriter
}

func (f fakeBindContext) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{{PayloadType: 96,
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}}}
}
func (fakeBindContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (fakeBindContext) SSRC() webrtc.SSRC                                      { return 1234 }
func (fakeBindContext) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (fakeBindContext) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (f fakeBindContext) WriteStream() webrtc.TrackLocalWriter                 { return f.w }
func (fakeBindContext) ID() string                                             { return "ctx" }
func (fakeBindContext) RTCPReader() interceptor.RTCPReader                     { return nil }

// keyframeFixture is a down track on a bench publisher whose PLIs are
// counted, and put caches a VP8 packet (a key frame or not) on its
// layer 0 as the publisher's receive path would.
func keyframeFixture(t *testing.T) (up *upTrack, d *downTrack, w *marshalWriter, plis *int, put func(seq uint16, key bool)) {
	t.Helper()
	up, d, w = benchDownTrack(t, 64)
	plis = new(int)
	up.writeRTCP = func(p []rtcp.Packet) error { *plis += len(p); return nil }
	l := up.layers[0]
	buf := make([]byte, 1500)
	put = func(seq uint16, key bool) {
		payload := rtcclient.VP8Payload(buf, seq, 0, true, key, 640, 360, 200)
		meta := media.PacketMeta{SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Keyframe: key}
		if !l.cache.Put(payload, &meta) {
			t.Fatalf("packet %d not cached", seq)
		}
	}
	return up, d, w, plis, put
}

// TestNewSubscriberKeyframeAtBind: a new subscriber's video forwards
// nothing and asks for no key frame until its track is bound and the
// description that bound it applied (pion sends nothing before); a key
// frame arriving before is not taken as the start of its stream (it could
// not be sent, and the frames after it could not be decoded). Then the
// publisher is asked for the key frame at once (RFC 4585 section 6.3.1
// PLI), without waiting for the allocator's next tick.
func TestNewSubscriberKeyframeAtBind(t *testing.T) {
	_, d, w, plis, put := keyframeFixture(t)
	d.bound.Store(false)

	// Before Bind: the allocator's tick asks for nothing, a key frame is
	// not forwarded and does not start the stream.
	d.setTarget(0)
	put(10, true)
	d.forward(0, 10)
	put(11, false)
	d.forward(0, 11)
	if *plis != 0 || w.n != 0 || d.current.Load() != -1 {
		t.Fatalf("unbound: %d PLIs, %d bytes written, current layer %d; want nothing", *plis, w.n, d.current.Load())
	}

	if _, err := d.Bind(fakeBindContext{w: w}); err != nil {
		t.Fatal(err)
	}
	// pion drops what is written between Bind and the end of applying
	// the description: a key frame then is not taken either.
	put(12, true)
	d.forward(0, 12)
	if *plis != 0 || d.current.Load() != -1 {
		t.Fatalf("bound, not started: %d PLIs, current layer %d; want nothing", *plis, d.current.Load())
	}
	d.start()
	if *plis != 1 {
		t.Fatalf("start sent %d PLIs, want 1", *plis)
	}
	d.start() // once only
	if *plis != 1 {
		t.Fatalf("a second start sent a PLI")
	}
	put(14, false)
	d.forward(0, 14)
	if w.n != 0 {
		t.Fatalf("a delta frame started the stream (%d bytes written)", w.n)
	}
	put(15, true)
	d.forward(0, 15)
	if w.n == 0 || d.current.Load() != 0 {
		t.Fatalf("the key frame after Bind was not forwarded: %d bytes, current layer %d", w.n, d.current.Load())
	}
	// Forwarding: the allocator asks for nothing more.
	d.setTarget(0)
	if *plis != 1 {
		t.Errorf("%d PLIs after the stream started, want 1", *plis)
	}
}

// TestJoinStormKeyframeRequestsBounded: many subscribers joining at once
// each start the publisher's video at a key frame, promptly, while the
// publisher (which, like a browser, sends key frames only when asked)
// gets at most one request per keyframeGuard plus one: a join storm is
// not a key frame storm. The allocator never ticks in this test, so
// every request comes from a subscriber's track being bound.
func TestJoinStormKeyframeRequestsBounded(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	s := newTestSFU(t, func(c *Config) { c.AllocationInterval = time.Hour })
	defer s.Close()
	pub := joinClient(t, s, "storm", "pub", clientOpts{audio: true, video: true, keyframesOnPLIOnly: true})
	defer pub.close()
	testkit.Eventually(t, testTimeout, "the publisher's video to reach the SFU", func() bool {
		pub.p.mu.Lock()
		defer pub.p.mu.Unlock()
		return pub.p.published["pub-video"] != nil
	})

	const n = 12
	before := pub.rtc.PLIs()
	began := time.Now()
	subs := make([]*testClient, n)
	var wg sync.WaitGroup
	for i := range subs {
		wg.Go(func() { subs[i] = joinClient(t, s, "storm", "sub"+string(rune('a'+i)), clientOpts{audio: true}) })
	}
	wg.Wait()
	for _, c := range subs {
		if c == nil {
			t.FailNow()
		}
		defer c.close()
	}
	for _, c := range subs {
		testkit.Eventually(t, testTimeout, c.id+" receiving a key frame of pub's video", func() bool {
			r := c.track("pub-video")
			if r == nil {
				return false
			}
			r.Mu.Lock()
			defer r.Mu.Unlock()
			return len(r.KeyWidths) > 0
		})
	}
	elapsed := time.Since(began)
	got := pub.rtc.PLIs() - before
	allowed := 2 + int64(elapsed/time.Duration(keyframeGuard))
	t.Logf("%d subscribers joined and got a key frame within %v; the publisher got %d PLIs (bound %d)",
		n, elapsed.Round(time.Millisecond), got, allowed)
	if got < 1 || got > allowed {
		t.Errorf("publisher got %d PLIs for %d joins in %v, want 1..%d", got, n, elapsed, allowed)
	}
	for _, c := range subs {
		r := c.track("pub-video")
		r.Mu.Lock()
		first := r.FirstKey
		r.Mu.Unlock()
		if !first {
			t.Errorf("%s: video began with a frame that is not a key frame", c.id)
		}
	}
}

// TestNoOfferWithoutChange: the connection coming up makes the SFU offer
// only if an offer is owed; the first server offer a participant gets is
// the one that adds what it can receive.
func TestNoOfferWithoutChange(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	s := newTestSFU(t, nil)
	defer s.Close()
	a := joinClient(t, s, "noop", "a", clientOpts{audio: true})
	defer a.close()
	a.hold.Store(true) // keep a's server offers to look at them
	testkit.Eventually(t, testTimeout, "a connected", func() bool { return a.p.connected.Load() })
	b := joinClient(t, s, "noop", "b", clientOpts{audio: true, video: true})
	defer b.close()
	select {
	case sdp := <-a.held:
		if !strings.Contains(sdp, "b-audio") && !strings.Contains(sdp, "b-video") {
			t.Errorf("a's first server offer sends none of b's tracks:\n%s", sdp)
		}
		a.answerOffer(t, sdp)
	case <-time.After(testTimeout):
		t.Fatal("no server offer to a after b published")
	}
	a.hold.Store(false)
}

// TestKeyframeGuardFromLastRequest: after a key frame answered a request,
// the next request waits until keyframeGuard after the answered one, not
// after the key frame: a browser's encoder would ignore a request within
// 300 ms of the last one it acted on, and the subscriber waiting for it
// would then wait out the whole interval.
func TestKeyframeGuardFromLastRequest(t *testing.T) {
	up, _, _ := benchDownTrack(t, 16)
	var clock atomic.Int64
	clock.Store(1e12)
	up.pub.sfu.cfg.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	plis := 0
	up.writeRTCP = func(p []rtcp.Packet) error { plis += len(p); return nil }
	l := up.layers[0]
	start := clock.Load()
	at := func(d time.Duration) int64 { clock.Store(start + int64(d)); return clock.Load() }

	up.requestKeyframe(0)                              // sent at 0
	up.keyframeState(l, true, at(40*time.Millisecond)) // answered at 40 ms
	at(200 * time.Millisecond)
	up.requestKeyframe(0) // a new subscriber: held
	if plis != 1 || !l.pliPending.Load() {
		t.Fatalf("request 200 ms after the last: %d PLIs, pending %v; want it held", plis, l.pliPending.Load())
	}
	up.keyframeState(l, false, at(time.Duration(keyframeGuard)-time.Millisecond))
	if plis != 1 {
		t.Fatalf("held request sent %v after the last one", time.Duration(keyframeGuard)-time.Millisecond)
	}
	up.keyframeState(l, false, at(time.Duration(keyframeGuard)))
	if plis != 2 || l.pliPending.Load() {
		t.Fatalf("held request not sent keyframeGuard after the last: %d PLIs", plis)
	}
	if keyframeGuard < int64(300*time.Millisecond) {
		t.Errorf("keyframeGuard %v is below libwebrtc's 300 ms", time.Duration(keyframeGuard))
	}
}

// notReadyWriter is pion's write stream before the subscriber's SRTP
// session is up (DTLS handshake not done): it drops what is written and
// reports no error and no bytes.
type notReadyWriter struct {
	ready bool
	w     *marshalWriter
}

func (n *notReadyWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if !n.ready {
		return 0, nil
	}
	return n.w.WriteRTP(h, payload)
}

func (n *notReadyWriter) Write(b []byte) (int, error) { return len(b), nil }

// TestKeyframeDroppedBeforeSRTPRestarts: a key frame that pion dropped
// because the subscriber's transport was not up yet (a LiveKit client
// offers its receive-only m-lines right after its first answer, before
// DTLS is done) does not start the subscriber's stream: the deltas after
// it are not sent, a key frame is asked for again, and the next one
// starts the stream.
func TestKeyframeDroppedBeforeSRTPRestarts(t *testing.T) {
	up, d, w, plis, put := keyframeFixture(t)
	l := up.layers[0]
	nw := &notReadyWriter{w: w}
	d.writer = nw
	d.setTarget(0)
	*plis = 0
	put(10, true)
	d.forward(0, 10)
	if d.current.Load() != -1 {
		t.Fatalf("a dropped key frame started the stream (current layer %d)", d.current.Load())
	}
	// The request for the next key frame is held back by the throttle
	// (the dropped one answered the last) and goes with the next packet
	// the throttle lets through; here it is pending.
	if *plis == 0 && !l.pliPending.Load() {
		t.Fatal("no key frame asked for after the dropped one")
	}
	nw.ready = true
	put(11, false)
	d.forward(0, 11)
	if w.n != 0 {
		t.Fatalf("a delta frame after the dropped key frame was sent (%d bytes)", w.n)
	}
	put(12, true)
	d.forward(0, 12)
	if w.n == 0 || d.current.Load() != 0 {
		t.Fatalf("the next key frame did not start the stream: %d bytes, current layer %d", w.n, d.current.Load())
	}
}
