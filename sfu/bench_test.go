package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	dto "github.com/prometheus/client_model/go"

	"github.com/switchboard-chat/switchboard/internal/testkit"
	"github.com/switchboard-chat/switchboard/internal/testkit/rtcclient"
	"github.com/switchboard-chat/switchboard/media"
)

// marshalWriter stands in for pion's SRTP write stream: it marshals the
// packet into a reused buffer, as srtp.SessionSRTP.writeRTP does before
// encrypting.
type marshalWriter struct {
	buf  []byte
	n    int // bytes written in all
	last int // length of the last packet, in buf
}

func (w *marshalWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	n, err := rtp.MarshalPacketTo(w.buf, h, payload)
	w.n += n
	w.last = n
	return n, err
}

func (w *marshalWriter) Write(b []byte) (int, error) { return len(b), nil }

// benchDownTrack wires an upTrack and a bound downTrack without
// PeerConnections, to measure our own per-packet work.
func benchDownTrack(b testing.TB, cacheSize int) (*upTrack, *downTrack, *marshalWriter) {
	m, err := newMetrics(nil)
	if err != nil {
		b.Fatal(err)
	}
	s := &SFU{cfg: Config{Now: time.Now}, m: m}
	pub := &Participant{id: "pub", sfu: s}
	sub := &Participant{id: "sub", sfu: s, bwe: media.NewBandwidthEstimator(media.EstimatorConfig{}),
		queue: make(chan sendItem, 16)}
	up := &upTrack{id: "v", streamID: "s", kind: webrtc.RTPCodecTypeVideo, pub: pub, mcodec: media.CodecVP8,
		writeRTCP: func([]rtcp.Packet) error { return nil },
		codec: webrtc.RTPCodecParameters{PayloadType: 96,
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}}}
	l := &upLayer{cache: media.NewPacketCache(cacheSize), pli: media.NewThrottle(1e9), fwdPLI: media.NewThrottle(1e9),
		upNack: media.NewThrottle(1e9)}
	up.layers[0] = l
	up.live = 1
	d := newDownTrack(up, sub)
	w := &marshalWriter{buf: make([]byte, 1600)}
	d.writer, d.pt, d.ssrc, d.tccID, d.cvoID = w, 96, 1234, 3, 4
	d.bound.Store(true)
	up.addDown(d)
	return up, d, w
}

// BenchmarkForwardPath is the whole per-packet path of the SFU for one
// subscriber, minus the sockets and SRTP: parse the received packet, cache
// it, queue it to the subscriber, then (on the send goroutine) pick the
// layer, rewrite sequence number, timestamp and VP8 picture ID, stamp the
// transport-wide sequence number and marshal.
func BenchmarkForwardPath(b *testing.B) {
	up, d, w := benchDownTrack(b, 512)
	l := up.layers[0]
	raw := make([]byte, 1500)
	payload := rtcclient.VP8Payload(make([]byte, 1500), 1, 1, true, true, 640, 360, 1100)
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 99, Extension: true}, Payload: payload}
	_ = pkt.SetExtension(1, []byte{0x20})
	_ = pkt.SetExtension(2, []byte{0x01}) // video orientation: 90 degrees
	var hdr rtp.Header
	hdr.Extensions = make([]rtp.Extension, 0, 16)
	hdr.CSRC = make([]uint32, 0, 16)
	var meta media.PacketMeta
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	i := 0
	for b.Loop() {
		i++
		pkt.SequenceNumber = uint16(i)
		pkt.Timestamp = uint32(i/3) * 3000
		n, _ := pkt.MarshalTo(raw)
		p, ok := parsePacket(raw[:n], &hdr, &meta, media.CodecVP8, extIDs{level: 1, orientation: 2})
		if !ok {
			b.Fatal("parse failed")
		}
		meta.Keyframe = true // every packet may start the stream
		l.cache.Put(p, &meta)
		for _, dt := range *up.downs.Load() {
			dt.sub.enqueue(sendItem{dt: dt, seq: meta.SequenceNumber})
		}
		it := <-d.sub.queue
		it.dt.forward(int(it.layer), it.seq)
	}
	if w.n == 0 {
		b.Fatal("nothing written")
	}
}

// BenchmarkRetransmit is the NACK answer: history lookup, cache read,
// rewrite and write.
func BenchmarkRetransmit(b *testing.B) {
	up, d, _ := benchDownTrack(b, 512)
	payload := rtcclient.VP8Payload(make([]byte, 1500), 1, 1, true, true, 640, 360, 1100)
	for i := 0; i < 256; i++ {
		meta := media.PacketMeta{SequenceNumber: uint16(i), Timestamp: uint32(i * 3000), Keyframe: true}
		_ = media.ParseVP8(payload, &meta.VP8)
		up.layers[0].cache.Put(payload, &meta)
		d.forward(0, uint16(i))
	}
	last := d.rw.LastSequenceNumber()
	// Each resend is 60 ms after the last, past rtxHoldoff.
	clock := time.Now()
	d.sub.sfu.cfg.Now = func() time.Time { clock = clock.Add(60 * time.Millisecond); return clock }
	b.ReportAllocs()
	i := 0
	before := counterValue(d.sub.sfu.m.retransmits)
	for b.Loop() {
		i++
		d.retransmit(last - uint16(i%200))
	}
	if counterValue(d.sub.sfu.m.retransmits) == before {
		b.Fatal("nothing resent")
	}
}

func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// BenchmarkForwardPion sends through the real stack: the subscriber's send
// goroutine, our down track, pion's RTCP report interceptor, SRTP and the
// ICE UDP mux, to a pion client on loopback. allocs/op counts every
// goroutine of the process, so it includes the receiving client's
// allocations (pion's ReadRTP allocates per packet) as well as the SFU's.
func BenchmarkForwardPion(b *testing.B) {
	s := newTestSFU(b, nil)
	defer s.Close()
	pub := joinClient(b, s, "bench", "pub", clientOpts{video: true})
	defer pub.close()
	sub := joinClient(b, s, "bench", "sub", clientOpts{})
	defer sub.close()
	testkit.Eventually(b, testTimeout, "video flowing", func() bool { r := sub.track("pub-video"); return r != nil && r.Packets.Load() > 10 })
	pub.rtc.StopSending() // the benchmark feeds the cache itself from here
	d := sub.p.downFor("pub-video")
	l := d.up.layer(0)
	payload := rtcclient.VP8Payload(make([]byte, 1500), 1, 1, true, false, 0, 0, 1100)
	var meta media.PacketMeta
	_ = media.ParseVP8(payload, &meta.VP8)
	meta.Keyframe = true
	seq := uint16(40000)
	feed := func(n int) {
		for i := 0; i < n; i++ {
			seq++
			meta.SequenceNumber, meta.Timestamp, meta.Marker = seq, uint32(seq)*3000, true
			l.cache.Put(payload, &meta)
			sub.p.enqueue(sendItem{dt: d, seq: seq})
			if len(sub.p.queue) > 256 {
				for len(sub.p.queue) > 0 {
					time.Sleep(50 * time.Microsecond)
				}
			}
		}
	}
	feed(1000) // warm up pools
	before := int(counterValue(s.m.packets))
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	feed(b.N)
	for len(sub.p.queue) > 0 {
		time.Sleep(50 * time.Microsecond)
	}
	b.StopTimer()
	if sent := int(counterValue(s.m.packets)) - before; sent < b.N*9/10 {
		b.Fatalf("only %d of %d packets sent", sent, b.N)
	}
}
