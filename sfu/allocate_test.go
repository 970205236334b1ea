package sfu

import (
	"fmt"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-chat/switchboard/media"
)

// allocFixture is a subscriber receiving (bound) one audio track and two
// three-layer video tracks (100, 300 and 900 kbit/s; 320, 640, 1280 wide)
// from publishers "a" and "b", with a fixed clock and no PeerConnection.
type allocFixture struct {
	sub    *Participant
	audio  *downTrack
	videoA *downTrack
	videoB *downTrack
	plis   map[string]int
}

func newAllocFixture(t *testing.T) *allocFixture {
	t.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	s := &SFU{cfg: Config{Now: func() time.Time { return now }}, m: m}
	f := &allocFixture{plis: map[string]int{}}
	f.sub = &Participant{id: "sub", sfu: s, done: make(chan struct{}), downs: map[string]*downTrack{},
		bwe: media.NewBandwidthEstimator(media.EstimatorConfig{Initial: 10_000_000, Max: 10_000_000})}
	mk := func(pub, id string, kind webrtc.RTPCodecType, rates ...int) *downTrack {
		up := &upTrack{id: id, kind: kind, pub: &Participant{id: pub, sfu: s},
			codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{ClockRate: 90000}}}
		up.writeRTCP = func(p []rtcp.Packet) error {
			if pli, ok := p[0].(*rtcp.PictureLossIndication); ok {
				f.plis[fmt.Sprintf("%s/%d", id, pli.MediaSSRC)]++
			}
			return nil
		}
		for i, r := range rates {
			l := &upLayer{index: i, ssrc: uint32(i), pli: media.NewThrottle(1), fwdPLI: media.NewThrottle(1)}
			// Two seconds of packets at rate r.
			for ts := int64(0); ts <= 2e9; ts += 1e8 {
				l.rate.Add(r/8/10, now.UnixNano()-2e9+ts)
			}
			l.lastPacket.Store(now.UnixNano())
			l.width.Store(int32(320 << i))
			up.layers[i] = l
		}
		d := newDownTrack(up, f.sub)
		d.bound.Store(true) // the subscriber answered: key frame requests go out
		f.sub.downs[id] = d
		return d
	}
	f.audio = mk("a", "a-audio", webrtc.RTPCodecTypeAudio, 50_000)
	f.videoA = mk("a", "a-video", webrtc.RTPCodecTypeVideo, 100_000, 300_000, 900_000)
	f.videoB = mk("b", "b-video", webrtc.RTPCodecTypeVideo, 100_000, 300_000, 900_000)
	return f
}

// TestAllocation: audio is served first and never paused; video tracks get
// their lowest layer in priority order (dominant speaker first), then
// upgrades in the same order; what does not fit is paused; a size limit
// caps the layer.
func TestAllocation(t *testing.T) {
	tests := []struct {
		name         string
		budget       int
		dominant     string
		maxWidthA    int
		wantA, wantB int32
	}{
		{name: "plenty", budget: 5_000_000, wantA: 2, wantB: 2},
		{name: "b dominant gets the upgrade", budget: 500_000, dominant: "b", wantA: 0, wantB: 1},
		{name: "a dominant gets the upgrade", budget: 500_000, dominant: "a", wantA: 1, wantB: 0},
		{name: "room for one video", budget: 170_000, dominant: "b", wantA: -1, wantB: 0},
		{name: "no headroom to resume", budget: 160_000, dominant: "b", wantA: -1, wantB: -1},
		{name: "audio only", budget: 120_000, dominant: "a", wantA: -1, wantB: -1},
		{name: "size limit", budget: 5_000_000, maxWidthA: 700, wantA: 1, wantB: 2},
		{name: "size limit below every layer", budget: 5_000_000, maxWidthA: 100, wantA: 0, wantB: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAllocFixture(t)
			f.sub.SetMaxBitrate(tt.budget)
			f.videoA.maxWidth.Store(int32(tt.maxWidthA))
			f.sub.allocate(tt.dominant, nil)
			if got := f.audio.target.Load(); got != 0 {
				t.Errorf("audio target %d, want 0", got)
			}
			if a, b := f.videoA.target.Load(), f.videoB.target.Load(); a != tt.wantA || b != tt.wantB {
				t.Errorf("targets a=%d b=%d, want a=%d b=%d", a, b, tt.wantA, tt.wantB)
			}
			// A chosen layer is asked for a key frame; want has its bit.
			if tt.wantA >= 0 {
				if f.plis[fmt.Sprintf("a-video/%d", tt.wantA)] == 0 {
					t.Errorf("no key frame request for a's layer %d: %v", tt.wantA, f.plis)
				}
				if f.videoA.want.Load()&(1<<tt.wantA) == 0 {
					t.Errorf("receive mask %b lacks layer %d", f.videoA.want.Load(), tt.wantA)
				}
			} else if f.videoA.want.Load() != 0 {
				t.Errorf("paused track still wants layers %b", f.videoA.want.Load())
			}
		})
	}
}

// TestPaddingForwarded: a padding-only packet (bandwidth probe) between two
// media packets is forwarded empty, so the subscriber sees no sequence
// gap; a packet whose padding length exceeds it is dropped.
func TestPaddingForwarded(t *testing.T) {
	up, d, w := benchDownTrack(t, 16)
	up.mcodec = media.CodecH264
	var seqs []uint16
	var sizes []int
	send := func(seq uint16, payload []byte, padding int) bool {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: 90000,
			Padding: padding > 0}, Payload: payload, PaddingSize: byte(padding)}
		raw, err := pkt.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var hdr rtp.Header
		var meta media.PacketMeta
		p, ok := parsePacket(raw, &hdr, &meta, up.mcodec, extIDs{})
		if !ok {
			return false
		}
		up.layers[0].cache.Put(p, &meta)
		before := w.n
		d.forward(0, seq)
		if w.n > before {
			var out rtp.Packet
			if err := out.Unmarshal(w.buf[:w.last]); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, out.SequenceNumber)
			sizes = append(sizes, len(out.Payload))
		}
		return true
	}
	send(10, []byte{0x65, 1, 2}, 0) // IDR
	send(11, nil, 200)              // padding only
	send(12, []byte{0x41, 1}, 0)
	if len(seqs) != 3 || seqs[1] != seqs[0]+1 || seqs[2] != seqs[1]+1 || sizes[1] != 0 {
		t.Fatalf("forwarded seqs %v sizes %v, want 3 consecutive with an empty middle one", seqs, sizes)
	}
	raw := []byte{0xa0, 102, 0, 13, 0, 0, 0, 1, 0, 0, 0, 1, 0x41, 9} // P bit, padding length 9 > payload
	var hdr rtp.Header
	var meta media.PacketMeta
	if _, ok := parsePacket(raw, &hdr, &meta, media.CodecH264, extIDs{}); ok {
		t.Error("packet with a padding length beyond its payload accepted")
	}
}
