package sfu

import (
	"testing"

	"github.com/pion/logging"
	"github.com/pion/transport/v4/vnet"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestBandwidthAdaptation: the link from the SFU to a subscriber is a
// 400 kbit/s token bucket (pion vnet). The SFU starts with a 1.5 Mbit/s
// estimate, so it may send the 1280-wide layer (about 580 kbit/s with key
// frames); transport-wide feedback must bring the estimate under what the
// link carries and the allocation down to a layer that fits.
func TestBandwidthAdaptation(t *testing.T) {
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "192.0.2.0/24", LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	nets := map[string]*vnet.Net{}
	for name, ip := range map[string]string{"sfu": "192.0.2.1", "pub": "192.0.2.2", "sub": "192.0.2.3"} {
		n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ip}})
		if err != nil {
			t.Fatal(err)
		}
		nets[name] = n
	}
	if err := wan.AddNet(nets["sfu"]); err != nil {
		t.Fatal(err)
	}
	if err := wan.AddNet(nets["pub"]); err != nil {
		t.Fatal(err)
	}
	// 400 kbit/s, 6 kB burst, 25 kB queue (half a second), then drops.
	link, err := vnet.NewQueue(nets["sub"], vnet.NewTBFQueue(400_000, 6000, 25_000))
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	if err := wan.AddNet(link); err != nil {
		t.Fatal(err)
	}
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = wan.Stop() }()
	conn, err := nets["sfu"].ListenPacket("udp4", "192.0.2.1:7882")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{UDPMux: conn, Net: nets["sfu"], AutoSubscribe: true,
		InitialBitrate: 1_500_000, MinBitrate: 50_000, AllocationInterval: 100 * 1e6})
	if err != nil {
		t.Fatal(err)
	}
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
