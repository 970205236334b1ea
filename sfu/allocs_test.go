package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/switchboard-chat/switchboard/internal/testkit/rtcclient"
	"github.com/switchboard-chat/switchboard/media"
)

// TestForwardPathAllocs fails if our own per-packet work starts to
// allocate: the path of BenchmarkForwardPath (parse, cache, queue, layer
// choice, rewrite, transport-wide sequence number, marshal) and the NACK
// answer of BenchmarkRetransmit, measured with testing.AllocsPerRun.
// pion's SRTP and interceptors are outside it (bench/sfu counts them).
func TestForwardPathAllocs(t *testing.T) {
	up, d, w := benchDownTrack(t, 512)
	l := up.layers[0]
	raw := make([]byte, 1500)
	payload := rtcclient.VP8Payload(make([]byte, 1500), 1, 1, true, true, 640, 360, 1100)
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 99, Extension: true}, Payload: payload}
	_ = pkt.SetExtension(1, []byte{0x20})
	_ = pkt.SetExtension(2, []byte{0x01})
	var hdr rtp.Header
	hdr.Extensions = make([]rtp.Extension, 0, 16)
	hdr.CSRC = make([]uint32, 0, 16)
	var meta media.PacketMeta
	i := 0
	forward := func() {
		i++
		pkt.SequenceNumber = uint16(i)
		pkt.Timestamp = uint32(i/3) * 3000
		n, _ := pkt.MarshalTo(raw)
		p, ok := parsePacket(raw[:n], &hdr, &meta, media.CodecVP8, extIDs{level: 1, orientation: 2})
		if !ok {
			t.Fatal("parse failed")
		}
		meta.Keyframe = true
		l.cache.Put(p, &meta)
		for _, dt := range *up.downs.Load() {
			dt.sub.enqueue(sendItem{dt: dt, seq: meta.SequenceNumber})
		}
		it := <-d.sub.queue
		it.dt.forward(int(it.layer), it.seq)
	}
	for range 300 { // fill the cache and the history first
		forward()
	}
	if a := testing.AllocsPerRun(500, forward); a != 0 {
		t.Errorf("forward path: %v allocations per packet, want 0", a)
	}
	if w.n == 0 {
		t.Fatal("nothing written")
	}

	clock := time.Now()
	d.sub.sfu.cfg.Now = func() time.Time { clock = clock.Add(60 * time.Millisecond); return clock }
	last := d.rw.LastSequenceNumber()
	j := 0
	before := counterValue(d.sub.sfu.m.retransmits)
	if a := testing.AllocsPerRun(200, func() {
		j++
		d.retransmit(last - uint16(j%200))
	}); a != 0 {
		t.Errorf("NACK answer: %v allocations per packet, want 0", a)
	}
	if counterValue(d.sub.sfu.m.retransmits) == before {
		t.Fatal("nothing resent")
	}
}
