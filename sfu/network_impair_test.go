package sfu

import (
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"
	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// impairedLink is the subscriber's downlink (what the SFU sends it) in a
// vnet: a token bucket (a bottleneck of a set rate, with a queue that
// drops when full) in front of a variable delay (jitter).
type impairedLink struct {
	tbf   *vnet.TBFQueue
	delay *vnet.DelayFilter

	stopJitter chan struct{}
	jitterDone sync.WaitGroup
}

// setJitter makes the link's one-way delay wander between 0 and max,
// changing every 10 ms (0 stops it). Packets keep their order: a DelayFilter
// releases in arrival order, so a shorter delay behind a longer one waits,
// as on a real queueing link.
func (l *impairedLink) setJitter(max time.Duration) {
	if l.stopJitter != nil {
		close(l.stopJitter)
		l.jitterDone.Wait()
		l.stopJitter = nil
	}
	l.delay.SetDelay(0)
	if max == 0 {
		return
	}
	stop := make(chan struct{})
	l.stopJitter = stop
	l.jitterDone.Add(1)
	go func() {
		defer l.jitterDone.Done()
		rng := rand.New(rand.NewSource(11))
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				l.delay.SetDelay(time.Duration(rng.Int63n(int64(max))))
			}
		}
	}()
}

// impairedSetup is an SFU at 192.0.2.1, a publisher at .2 and a
// subscriber at .3 whose downlink is an impairedLink (unlimited rate and no
// delay until the test sets them). Every goroutine must be gone after the
// test.
func impairedSetup(t *testing.T, cfg Config) (*SFU, map[string]*vnet.Net, *impairedLink) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t, testkit.PionClosing) })
	link := &impairedLink{}
	nets := testWAN(t, wanConfig{ips: sfuIPs(), wrap: map[string]func(*testing.T, *vnet.Net) vnet.NIC{
		"sub": func(t *testing.T, n *vnet.Net) vnet.NIC {
			var err error
			if link.delay, err = vnet.NewDelayFilter(n); err != nil {
				t.Fatal(err)
			}
			// Unlimited until set: 1 Gbit/s, a 64 kB burst, a 40 kB queue
			// (about one second at 300 kbit/s), then drops, as a home
			// router's does.
			link.tbf = vnet.NewTBFQueue(1_000_000_000, 64_000, 40_000)
			q, err := vnet.NewQueue(link.delay, link.tbf)
			if err != nil {
				t.Fatal(err)
			}
			// Cleanups run last-registered first: the jitter and the
			// router stop before the link's goroutines.
			t.Cleanup(func() { _ = link.delay.Close() })
			t.Cleanup(func() { _ = q.Close() })
			return q
		},
	}})
	t.Cleanup(func() { link.setJitter(0) })
	return sfuOn(t, nets["sfu"], cfg), nets, link
}

// TestFaultBottleneckStepsDownAndClimbsBack: a publisher sends three
// simulcast layers (320, 640 and 1280 wide, about 60, 180 and 540 kbit/s).
// The subscriber's downlink narrows to 300 kbit/s: the estimate must fall
// below it and the SFU must send a lower layer (no 1280-wide key frame
// after adapting) while audio keeps flowing. When the bottleneck goes
// away, the estimate must climb and the SFU must switch back to the top
// layer; the subscriber stays in the call throughout.
func TestFaultBottleneckStepsDownAndClimbsBack(t *testing.T) {
	s, nets, link := impairedSetup(t, Config{InitialBitrate: 1_500_000, MinBitrate: 50_000, AllocationInterval: 100 * time.Millisecond})
	defer s.Close()
	pub := joinClient(t, s, "bottleneck", "pub", clientOpts{audio: true, video: true, simulcast: []string{"q", "h", "f"},
		videoKbps: 60, net: nets["pub"]})
	defer pub.close()
	sub := joinClient(t, s, "bottleneck", "sub", clientOpts{net: nets["sub"]})
	defer sub.close()

	testkit.Eventually(t, testTimeout, "video and audio flowing", func() bool {
		v, a := sub.track("pub-video"), sub.track("pub-audio")
		return v != nil && a != nil && v.Packets.Load() > 30 && a.Packets.Load() > 30
	})
	v, a := sub.track("pub-video"), sub.track("pub-audio")
	waitWidth(t, v, 1280)
	t.Logf("open link: receiving the 1280 layer (estimate %d bit/s)", sub.p.EstimatedBitrate())

	link.tbf.SetRate(300_000)
	testkit.Eventually(t, testTimeout, "estimate below the 300 kbit/s bottleneck", func() bool { return sub.p.EstimatedBitrate() < 300_000 })
	est := sub.p.EstimatedBitrate()
	at := waitWidth(t, v, 640)
	if k := waitKeyframes(t, v, at, 2, "key frames after stepping down"); k[0] > 640 || k[1] > 640 {
		t.Errorf("after stepping down under a 300 kbit/s bottleneck, key frames of widths %v came through", k)
	}
	audioBefore := a.Packets.Load()
	testkit.Eventually(t, testTimeout, "audio under the bottleneck", func() bool { return a.Packets.Load() > audioBefore+100 })
	t.Logf("300 kbit/s bottleneck: estimate %d bit/s, key frame widths so far %v", est, keyframes(v))

	link.tbf.SetRate(1_000_000_000)
	start, asked := time.Now(), time.Time{}
	testkit.Eventually(t, 90*time.Second, "the 1280 layer again after the bottleneck went away", func() bool {
		k := keyframes(v)
		if len(k) > 0 && k[len(k)-1] == 1280 {
			return true
		}
		if sub.p.EstimatedBitrate() > 900_000 && time.Since(asked) > 500*time.Millisecond {
			// The estimate is back; a decoder that lost its picture in
			// the bottleneck asks for a key frame (RFC 4585 PLI).
			askKeyFrame(sub, v)
			asked = time.Now()
		}
		return false
	})
	t.Logf("bottleneck gone: back on the 1280 layer after %s (estimate %d bit/s)", time.Since(start).Round(100*time.Millisecond),
		sub.p.EstimatedBitrate())
	select {
	case err := <-sub.closed:
		t.Fatalf("the subscriber was dropped: %v", err)
	default:
	}
}

// TestFaultJitterKeepsCall: the subscriber's downlink delay wanders
// between 0 and 200 ms. Audio and video keep flowing, a key frame asked
// for arrives, nobody is dropped, and what the subscriber received of the
// audio stream has no more than a few percent of it missing (jitter is not
// loss: the SFU must not treat late packets as lost and drop the stream).
func TestFaultJitterKeepsCall(t *testing.T) {
	s, nets, link := impairedSetup(t, Config{})
	defer s.Close()
	pub := joinClient(t, s, "jitter", "pub", clientOpts{audio: true, video: true, net: nets["pub"], keyframesOnPLIOnly: true})
	defer pub.close()
	sub := joinClient(t, s, "jitter", "sub", clientOpts{net: nets["sub"]})
	defer sub.close()
	testkit.Eventually(t, testTimeout, "media flowing", func() bool {
		v, a := sub.track("pub-video"), sub.track("pub-audio")
		return v != nil && a != nil && a.Packets.Load() > 30 && keyFrames(v) > 0
	})
	v, a := sub.track("pub-video"), sub.track("pub-audio")
	link.setJitter(200 * time.Millisecond)
	a.Mu.Lock()
	from := len(a.Seqs)
	a.Mu.Unlock()
	vBefore, had := v.Packets.Load(), keyFrames(v)
	testkit.Eventually(t, testTimeout, "300 audio packets under jitter", func() bool {
		a.Mu.Lock()
		defer a.Mu.Unlock()
		return len(a.Seqs)-from >= 300
	})
	testkit.Eventually(t, testTimeout, "video under jitter", func() bool { return v.Packets.Load() > vBefore+100 })
	waitKeyFrame(t, sub, v, had)
	a.Mu.Lock()
	seqs := append([]uint16(nil), a.Seqs[from:]...)
	a.Mu.Unlock()
	got, span := arrivedOf(seqs)
	t.Logf("0–200 ms jitter: %d of %d audio packets arrived", got, span)
	if got*100 < span*97 {
		t.Errorf("only %d of %d audio packets arrived under jitter alone", got, span)
	}
	select {
	case err := <-sub.closed:
		t.Fatalf("the subscriber was dropped under jitter: %v", err)
	case err := <-pub.closed:
		t.Fatalf("the publisher was dropped under jitter: %v", err)
	default:
	}
}
