package sfu

import (
	"math/rand"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// lossyLink drops a share of the RTP packets one address sends another on
// a vnet router, and records the (SSRC, sequence number) of each dropped
// video packet. SRTP leaves the RTP header in clear (RFC 3711 section 3.1),
// so the filter can read them.
type lossyLink struct {
	from, to string
	rate     float64
	rng      *rand.Rand

	mu      sync.Mutex
	on      bool
	videoPT byte
	dropped map[uint16]bool // sequence numbers of dropped video packets
	total   int
}

func (l *lossyLink) filter(c vnet.Chunk) bool {
	if c.Network() != "udp" {
		return true
	}
	src, _ := c.SourceAddr().(*net.UDPAddr)
	dst, _ := c.DestinationAddr().(*net.UDPAddr)
	if src == nil || dst == nil || src.IP.String() != l.from || dst.IP.String() != l.to {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.on {
		return true
	}
	b := c.UserData()
	isRTP := len(b) >= 12 && b[0]>>6 == 2 && (b[1]&0x7f < 64 || b[1]&0x7f > 95)
	if !isRTP {
		return true // RTCP, STUN, DTLS pass
	}
	if b[1]&0x7f == l.videoPT {
		l.total++
	}
	if l.rng.Float64() >= l.rate {
		return true
	}
	if b[1]&0x7f == l.videoPT {
		l.dropped[uint16(b[2])<<8|uint16(b[3])] = true
	}
	return false
}

// TestNACKRecoveryUnderLoss: pion's vnet drops 10% of the RTP packets from
// the SFU to a subscriber; the subscriber's NACKs must get at least 95% of
// the lost video packets back from the SFU's cache.
func TestNACKRecoveryUnderLoss(t *testing.T) {
	link := &lossyLink{from: "192.0.2.1", to: "192.0.2.3", rate: 0.10, rng: rand.New(rand.NewSource(1)),
		dropped: map[uint16]bool{}}
	nets := testWAN(t, wanConfig{ips: sfuIPs(), filter: link.filter})
	// The loss would drive the estimate down and pause the video; this
	// test is about retransmission, so the floor keeps the video on.
	s := sfuOn(t, nets["sfu"], Config{InitialBitrate: 5_000_000, MinBitrate: 5_000_000})
	defer s.Close()
	pub := joinClient(t, s, "loss", "pub", clientOpts{video: true, videoKbps: 2400, net: nets["pub"]})
	defer pub.close()
	sub := joinClient(t, s, "loss", "sub", clientOpts{net: nets["sub"]})
	defer sub.close()

	testkit.Eventually(t, testTimeout, "video flowing", func() bool {
		r := sub.track("pub-video")
		return r != nil && r.Packets.Load() > 30
	})
	var pt byte
	for _, tr := range sub.pc.GetTransceivers() {
		if tr.Receiver() != nil && tr.Kind() == webrtc.RTPCodecTypeVideo {
			if ps := tr.Receiver().GetParameters().Codecs; len(ps) > 0 {
				pt = byte(ps[0].PayloadType)
			}
		}
	}
	link.mu.Lock()
	link.videoPT, link.on = pt, true
	link.mu.Unlock()
	testkit.Eventually(t, testTimeout, "150 dropped video packets", func() bool {
		link.mu.Lock()
		defer link.mu.Unlock()
		return len(link.dropped) >= 150
	})
	link.mu.Lock()
	link.on = false
	dropped := make([]uint16, 0, len(link.dropped))
	for seq := range link.dropped {
		dropped = append(dropped, seq)
	}
	total := link.total
	link.mu.Unlock()

	r := sub.track("pub-video")
	recovered := func() int {
		r.Mu.Lock()
		defer r.Mu.Unlock()
		got := make(map[uint16]bool, len(r.Seqs))
		for _, s := range r.Seqs {
			got[s] = true
		}
		n := 0
		for _, s := range dropped {
			if got[s] {
				n++
			}
		}
		return n
	}
	testkit.Eventually(t, testTimeout, "recovery of 95% of the dropped packets", func() bool {
		return recovered()*100 >= len(dropped)*95
	})
	// Give the last NACKs a moment to be answered, for the figure below.
	for deadline := time.Now().Add(3 * time.Second); recovered() < len(dropped) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	n := recovered()
	t.Logf("10%% loss SFU->subscriber: %d of %d video packets dropped (%.1f%%), %d recovered by NACK (%.1f%%)",
		len(dropped), total, 100*float64(len(dropped))/float64(total), n, 100*float64(n)/float64(len(dropped)))
}
