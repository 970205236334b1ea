package sfu

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/transport/v5/vnet"
	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// natLifetime is how long the subscriber's NAT keeps an idle mapping.
const natLifetime = 2 * time.Second

// natWatch is the subscriber's side of a NAT rebinding: a filter on the
// LAN that can cut the subscriber off, and a filter on the WAN that
// records from which public ports the subscriber's packets come.
type natWatch struct {
	mu       sync.Mutex
	cut      bool
	ports    map[int]bool // public source ports seen on the WAN
	lastSeen time.Time    // last packet from the NAT's public address
}

// lan drops every packet from or to the subscriber while cut.
func (w *natWatch) lan(c vnet.Chunk) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.cut
}

// wan notes the public port of each packet from the NAT.
func (w *natWatch) wan(c vnet.Chunk) bool {
	if src, ok := c.SourceAddr().(*net.UDPAddr); ok && src.IP.String() == "192.0.2.3" {
		w.mu.Lock()
		w.ports[src.Port] = true
		w.lastSeen = time.Now()
		w.mu.Unlock()
	}
	return true
}

func (w *natWatch) portSet() map[int]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[int]bool, len(w.ports))
	for p := range w.ports {
		out[p] = true
	}
	return out
}

// natSetup is an SFU at 192.0.2.1 and a publisher at .2 on a WAN, and a
// subscriber at 10.0.0.2 behind a NAT whose public address is 192.0.2.3
// (endpoint-independent mapping and filtering, RFC 4787 section 4.1 and
// 5; a mapping idle for natLifetime expires).
func natSetup(t *testing.T) (*SFU, *vnet.Net, *vnet.Net, *natWatch) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t, testkit.PionClosing) })
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	w := &natWatch{ports: map[int]bool{}}
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "192.0.2.0/24", LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	lan, err := vnet.NewRouter(&vnet.RouterConfig{
		StaticIPs: []string{"192.0.2.3"}, CIDR: "10.0.0.0/24", LoggerFactory: lf,
		NATType: &vnet.NATType{
			Mode:              vnet.NATModeNormal,
			MappingBehavior:   vnet.EndpointIndependent,
			FilteringBehavior: vnet.EndpointIndependent,
			MappingLifeTime:   natLifetime,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	nets := map[string]*vnet.Net{}
	for name, ip := range map[string]string{"sfu": "192.0.2.1", "pub": "192.0.2.2", "sub": "10.0.0.2"} {
		n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ip}})
		if err != nil {
			t.Fatal(err)
		}
		nets[name] = n
		r := wan
		if name == "sub" {
			r = lan
		}
		if err := r.AddNet(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := wan.AddRouter(lan); err != nil {
		t.Fatal(err)
	}
	lan.AddChunkFilter(w.lan)
	wan.AddChunkFilter(w.wan)
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wan.Stop() })
	return sfuOn(t, nets["sfu"], Config{}), nets["pub"], nets["sub"], w
}

// rebind cuts the subscriber off until its NAT mapping has expired (no
// packet from the NAT for longer than natLifetime), then lets it talk
// again: its next packet leaves through a new mapping, a new public port.
func rebind(t *testing.T, w *natWatch) {
	t.Helper()
	w.mu.Lock()
	w.cut = true
	w.mu.Unlock()
	testkit.Eventually(t, testTimeout, "the NAT mapping to expire", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return time.Since(w.lastSeen) > natLifetime+500*time.Millisecond
	})
	w.mu.Lock()
	w.cut = false
	w.mu.Unlock()
}

// TestFaultNATRebinding: mid-call the subscriber's NAT mapping expires
// and its packets come from a new public port (NAT rebinding, RFC 4787
// section 4.3). The call does not recover by itself: the SFU's ICE agent
// (pion, controlled) answers the subscriber's keepalives from the new
// address but keeps sending media to the selected pair's old address;
// it would move only on a nomination of the new pair with higher
// priority or renomination (draft-thatcher-ice-renomination), and a
// client that sees nothing wrong on its side sends neither (measured: no
// audio within 20 s). What recovers the call is what a client does when
// its media stops: an ICE restart (RFC 8445 section 9) with a new offer.
// After it the participant stays, audio flows and a key frame arrives.
func TestFaultNATRebinding(t *testing.T) {
	s, pubNet, subNet, w := natSetup(t)
	defer s.Close()
	pub := joinClient(t, s, "rebind", "pub", clientOpts{audio: true, video: true, net: pubNet, keyframesOnPLIOnly: true})
	defer pub.close()
	sub := joinClient(t, s, "rebind", "sub", clientOpts{net: subNet})
	defer sub.close()
	testkit.Eventually(t, testTimeout, "media flowing", func() bool {
		a, v := sub.track("pub-audio"), sub.track("pub-video")
		return a != nil && v != nil && a.Packets.Load() > 30 && keyFrames(v) > 0
	})
	a, v := sub.track("pub-audio"), sub.track("pub-video")
	old := w.portSet()
	rebind(t, w)
	testkit.Eventually(t, testTimeout, "the subscriber's packets from a new public port", func() bool {
		for p := range w.portSet() {
			if !old[p] {
				return true
			}
		}
		return false
	})
	before, had := a.Packets.Load(), keyFrames(v)
	sub.renegotiate(t, true)
	testkit.Eventually(t, testTimeout, "audio after the rebinding", func() bool { return a.Packets.Load() > before+50 })
	waitKeyFrame(t, sub, v, had)
	select {
	case err := <-sub.closed:
		t.Fatalf("the subscriber was dropped: %v", err)
	default:
	}
	if st := s.Stats(); st.Participants != 2 {
		t.Fatalf("participants after the rebinding: %d, want 2", st.Participants)
	}
}
