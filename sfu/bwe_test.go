package sfu

import (
	"testing"

	"github.com/pion/transport/v5/vnet"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestBandwidthAdaptation: the link from the SFU to a subscriber is a
// 400 kbit/s token bucket (pion vnet). The SFU starts with a 1.5 Mbit/s
// estimate, so it may send the 1280-wide layer (about 580 kbit/s with key
// frames); transport-wide feedback must bring the estimate under what the
// link carries and the allocation down to a layer that fits.
func TestBandwidthAdaptation(t *testing.T) {
	nets := testWAN(t, wanConfig{ips: sfuIPs(), wrap: map[string]func(*testing.T, *vnet.Net) vnet.NIC{
		"sub": func(t *testing.T, n *vnet.Net) vnet.NIC {
			// 400 kbit/s, 6 kB burst, 25 kB queue (half a second), then drops.
			link, err := vnet.NewQueue(n, vnet.NewTBFQueue(400_000, 6000, 25_000))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = link.Close() })
			return link
		},
	}})
	s := sfuOn(t, nets["sfu"], Config{InitialBitrate: 1_500_000, MinBitrate: 50_000, AllocationInterval: 100 * 1e6})
	defer s.Close()
	pub := joinClient(t, s, "bwe", "pub", clientOpts{video: true, simulcast: []string{"q", "h", "f"},
		videoKbps: 60, net: nets["pub"]})
	defer pub.close()
	sub := joinClient(t, s, "bwe", "sub", clientOpts{net: nets["sub"]})
	defer sub.close()

	testkit.Eventually(t, testTimeout, "video flowing", func() bool { r := sub.track("pub-video"); return r != nil && r.Packets.Load() > 30 })
	r := sub.track("pub-video")
	testkit.Eventually(t, testTimeout, "estimate below the link rate", func() bool { return sub.p.EstimatedBitrate() < 400_000 })
	est := sub.p.EstimatedBitrate()
	at := waitWidth(t, r, 640)
	k := waitKeyframes(t, r, at, 2, "key frames after adapting")
	t.Logf("400 kbit/s link: estimate fell from 1500000 to %d bit/s; key frame widths received: %v", est, keyframes(r))
	for _, w := range k {
		if w > 640 {
			t.Errorf("after adapting, a %d-wide key frame came through", w)
		}
	}
}
