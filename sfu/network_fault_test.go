package sfu

import (
	"math/rand"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/transport/v5/vnet"
	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// faultNet is a chunk filter on a vnet router that plays a bad network:
// random loss of RTP to and from some addresses, and addresses cut off
// entirely (a blackout, or an interface that went away).
type faultNet struct {
	mu      sync.Mutex
	rng     *rand.Rand
	loss    float64         // share of RTP packets dropped...
	lossIPs map[string]bool // ...when they come from or go to these
	blocked map[string]bool // every packet from or to these is dropped
}

func newFaultNet() *faultNet {
	return &faultNet{rng: rand.New(rand.NewSource(7)), lossIPs: map[string]bool{}, blocked: map[string]bool{}}
}

func (f *faultNet) filter(c vnet.Chunk) bool {
	src, _ := c.SourceAddr().(*net.UDPAddr)
	dst, _ := c.DestinationAddr().(*net.UDPAddr)
	if src == nil || dst == nil {
		return true
	}
	s, d := src.IP.String(), dst.IP.String()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blocked[s] || f.blocked[d] {
		return false
	}
	if f.loss == 0 || !(f.lossIPs[s] || f.lossIPs[d]) {
		return true
	}
	b := c.UserData()
	isRTP := len(b) >= 12 && b[0]>>6 == 2 && (b[1]&0x7f < 64 || b[1]&0x7f > 95)
	return !isRTP || f.rng.Float64() >= f.loss
}

func (f *faultNet) set(mod func(f *faultNet)) {
	f.mu.Lock()
	mod(f)
	f.mu.Unlock()
}

// faultSetup is an SFU at 192.0.2.1, a publisher at .2 and a subscriber
// at .3 (and .4 when twoIPs: a second interface) on one vnet router with
// a faultNet filter. Every goroutine must be gone after the test.
func faultSetup(t *testing.T, twoIPs bool) (*SFU, map[string]*vnet.Net, *faultNet) {
	t.Helper()
	// Cleanups run last-registered first: the leak check after the
	// router has stopped (and after the test's deferred closes).
	t.Cleanup(func() { goleak.VerifyNone(t, testkit.PionClosing) })
	ips := sfuIPs()
	if twoIPs {
		ips["sub"] = append(ips["sub"], "192.0.2.4")
	}
	fn := newFaultNet()
	nets := testWAN(t, wanConfig{ips: ips, filter: fn.filter})
	return sfuOn(t, nets["sfu"], Config{}), nets, fn
}

// keyFrames is how many VP8 key frames the track has received.
func keyFrames(r *recvTrack) int {
	r.Mu.Lock()
	defer r.Mu.Unlock()
	return len(r.KeyWidths)
}

// askKeyFrame sends a PLI for every SSRC of r, as a browser's decoder
// does when it cannot go on (RFC 4585 section 6.3.1).
func askKeyFrame(c *testClient, r *recvTrack) {
	r.Mu.Lock()
	var pkts []rtcp.Packet
	for ssrc := range r.SSRCs {
		pkts = append(pkts, &rtcp.PictureLossIndication{MediaSSRC: ssrc})
	}
	r.Mu.Unlock()
	_ = c.pc.WriteRTCP(pkts)
}

// waitKeyFrame asks for a key frame every 500 ms (a receiver repeats its
// PLI while it has nothing to decode) until one more than had arrives.
func waitKeyFrame(t *testing.T, c *testClient, r *recvTrack, had int) {
	t.Helper()
	last := time.Time{}
	testkit.Eventually(t, testTimeout, "a key frame", func() bool {
		if keyFrames(r) > had {
			return true
		}
		if time.Since(last) > 500*time.Millisecond {
			askKeyFrame(c, r)
			last = time.Now()
		}
		return false
	})
}

// TestFaultAudioUnder20PercentLoss: with 20% of the RTP dropped on both
// hops (publisher to SFU and SFU to subscriber), audio keeps flowing: the
// subscriber keeps receiving, at least half of the audio packets arrive,
// and nobody is dropped from the call.
func TestFaultAudioUnder20PercentLoss(t *testing.T) {
	s, nets, fn := faultSetup(t, false)
	defer s.Close()
	pub := joinClient(t, s, "loss20", "pub", clientOpts{audio: true, video: true, net: nets["pub"]})
	defer pub.close()
	sub := joinClient(t, s, "loss20", "sub", clientOpts{net: nets["sub"]})
	defer sub.close()
	testkit.Eventually(t, testTimeout, "audio flowing", func() bool {
		r := sub.track("pub-audio")
		return r != nil && r.Packets.Load() > 50
	})
	r := sub.track("pub-audio")
	r.Mu.Lock()
	from := len(r.Seqs)
	r.Mu.Unlock()
	fn.set(func(f *faultNet) {
		f.loss = 0.20
		f.lossIPs["192.0.2.2"], f.lossIPs["192.0.2.3"] = true, true
	})
	testkit.Eventually(t, testTimeout, "300 audio packets under loss", func() bool {
		r.Mu.Lock()
		defer r.Mu.Unlock()
		return len(r.Seqs)-from >= 300
	})
	r.Mu.Lock()
	seqs := append([]uint16(nil), r.Seqs[from:]...)
	r.Mu.Unlock()
	got, span := arrivedOf(seqs)
	t.Logf("20%% loss on both hops: %d of %d audio packets arrived (%.0f%%)", got, span, 100*float64(got)/float64(span))
	if got*2 < span {
		t.Errorf("only %d of %d audio packets arrived under 20%% loss per hop", got, span)
	}
	select {
	case err := <-sub.closed:
		t.Fatalf("the subscriber was dropped under loss: %v", err)
	case err := <-pub.closed:
		t.Fatalf("the publisher was dropped under loss: %v", err)
	default:
	}
}

// TestFaultVideoRecoversAfterBlackout: the subscriber's network goes
// silent for 2 s (nothing in or out); when it comes back, the
// subscriber's PLI reaches the publisher (who sends key frames only when
// asked, as browsers do), a key frame arrives and video flows again.
func TestFaultVideoRecoversAfterBlackout(t *testing.T) {
	s, nets, fn := faultSetup(t, false)
	defer s.Close()
	pub := joinClient(t, s, "blackout", "pub", clientOpts{audio: true, video: true, net: nets["pub"], keyframesOnPLIOnly: true})
	defer pub.close()
	sub := joinClient(t, s, "blackout", "sub", clientOpts{net: nets["sub"]})
	defer sub.close()
	testkit.Eventually(t, testTimeout, "video flowing", func() bool {
		r := sub.track("pub-video")
		return r != nil && r.Packets.Load() > 30 && keyFrames(r) > 0
	})
	r := sub.track("pub-video")
	fn.set(func(f *faultNet) { f.blocked["192.0.2.3"] = true })
	time.Sleep(2 * time.Second) // the blackout itself, not a wait for a result
	fn.set(func(f *faultNet) { delete(f.blocked, "192.0.2.3") })
	had, before := keyFrames(r), r.Packets.Load()
	waitKeyFrame(t, sub, r, had)
	testkit.Eventually(t, testTimeout, "video after the blackout", func() bool { return r.Packets.Load() > before+60 })
	select {
	case err := <-sub.closed:
		t.Fatalf("the subscriber was dropped by a 2 s blackout: %v", err)
	default:
	}
}

// TestFaultAddressChangeICERestart: the subscriber moves from one
// interface to another (Wi-Fi to mobile: the old address goes dead, a new
// one comes up), then restarts ICE (RFC 8445 section 9) with a new offer;
// the participant stays, audio flows again and a key frame arrives.
func TestFaultAddressChangeICERestart(t *testing.T) {
	s, nets, fn := faultSetup(t, true)
	defer s.Close()
	fn.set(func(f *faultNet) { f.blocked["192.0.2.4"] = true }) // not up yet
	pub := joinClient(t, s, "handover", "pub", clientOpts{audio: true, video: true, net: nets["pub"], keyframesOnPLIOnly: true})
	defer pub.close()
	sub := joinClient(t, s, "handover", "sub", clientOpts{net: nets["sub"]})
	defer sub.close()
	testkit.Eventually(t, testTimeout, "media flowing", func() bool {
		a, v := sub.track("pub-audio"), sub.track("pub-video")
		return a != nil && v != nil && a.Packets.Load() > 30 && keyFrames(v) > 0
	})
	a, v := sub.track("pub-audio"), sub.track("pub-video")
	fn.set(func(f *faultNet) {
		f.blocked["192.0.2.3"] = true
		delete(f.blocked, "192.0.2.4")
	})
	sub.renegotiate(t, true)
	before, had := a.Packets.Load(), keyFrames(v)
	testkit.Eventually(t, testTimeout, "audio after the address change", func() bool { return a.Packets.Load() > before+50 })
	waitKeyFrame(t, sub, v, had)
	select {
	case err := <-sub.closed:
		t.Fatalf("the subscriber was dropped on an ICE restart: %v", err)
	default:
	}
	if st := s.Stats(); st.Participants != 2 {
		t.Fatalf("participants after the restart: %d, want 2", st.Participants)
	}
}
