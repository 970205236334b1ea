package sfu

import (
	"testing"

	"github.com/pion/logging"
	"github.com/pion/transport/v5/vnet"
)

// wanConfig says what testWAN builds: a Net per name at its IPs on
// 192.0.2.0/24, an optional chunk filter on the router (loss, cuts), and
// optional wrappers that put a Net behind a NIC of the test's (a rate
// limit, a delay) on the router.
type wanConfig struct {
	ips    map[string][]string
	filter vnet.ChunkFilter
	wrap   map[string]func(t *testing.T, n *vnet.Net) vnet.NIC
}

// sfuIPs are the usual three hosts: the SFU at .1, a publisher at .2 and a
// subscriber at .3.
func sfuIPs() map[string][]string {
	return map[string][]string{"sfu": {"192.0.2.1"}, "pub": {"192.0.2.2"}, "sub": {"192.0.2.3"}}
}

// testWAN starts a vnet router as cfg says and stops it when the test
// ends. Register a leak check before calling it: cleanups run
// last-registered first, so the check then runs after the router stopped.
func testWAN(t *testing.T, cfg wanConfig) map[string]*vnet.Net {
	t.Helper()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "192.0.2.0/24", LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	nets := map[string]*vnet.Net{}
	for name, ips := range cfg.ips {
		n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: ips})
		if err != nil {
			t.Fatal(err)
		}
		nets[name] = n
		var nic vnet.NIC = n
		if w := cfg.wrap[name]; w != nil {
			nic = w(t, n)
		}
		if err := wan.AddNet(nic); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.filter != nil {
		wan.AddChunkFilter(cfg.filter)
	}
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wan.Stop() })
	return nets
}

// sfuOn starts an SFU listening on n at 192.0.2.1:7882, auto-subscribing
// its participants, with cfg's other settings.
func sfuOn(t *testing.T, n *vnet.Net, cfg Config) *SFU {
	t.Helper()
	conn, err := n.ListenPacket("udp4", "192.0.2.1:7882")
	if err != nil {
		t.Fatal(err)
	}
	cfg.UDPMux, cfg.Net, cfg.AutoSubscribe = conn, n, true
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// arrivedOf says how many packets seqs holds, out of the span of sequence
// numbers from its lowest to its highest (unwrapped relative to the first;
// the window must be far below 2^15).
func arrivedOf(seqs []uint16) (arrived, span int) {
	lo, hi := int(seqs[0]), int(seqs[0])
	for _, s := range seqs {
		v := int(seqs[0]) + int(int16(s-seqs[0]))
		lo, hi = min(lo, v), max(hi, v)
	}
	return len(seqs), hi - lo + 1
}
