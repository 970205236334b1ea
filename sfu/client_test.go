package sfu

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"
)

// This file is the test harness: a real pion client that publishes
// synthetic Opus and VP8 (real VP8 payload descriptors and key frame
// headers) and records what it receives, signalling with an SFU in-process.

const testTimeout = 20 * time.Second

func newTestSFU(t testing.TB, mod func(*Config)) *SFU {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{UDPMux: conn, AutoSubscribe: true}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vp8Payload builds a VP8 RTP payload (RFC 7741): descriptor with 15-bit
// picture ID and TL0PICIDX, then a payload header whose P bit says key frame
// or not, and on key frames the 10-byte key frame header with the size.
func vp8Payload(buf []byte, picID uint16, tl0 uint8, start, key bool, w, h uint16, size int) []byte {
	b := buf[:0]
	first := byte(0x80) // X
	if start {
		first |= 0x10 // S, PID 0
	}
	b = append(b, first, 0xc0, 0x80|byte(picID>>8)&0x7f, byte(picID), tl0)
	if start {
		if key {
			b = append(b, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, byte(w), byte(w>>8), byte(h), byte(h>>8))
		} else {
			b = append(b, 0x11, 0x02, 0x00)
		}
	}
	for len(b) < size {
		b = append(b, byte(len(b)))
	}
	return b
}

// h264Payload builds an H.264 RTP payload (RFC 6184): a key frame starts
// with a STAP-A of SPS and PPS (section 5.7.1) in front of an IDR slice;
// other packets are non-IDR slices.
func h264Payload(buf []byte, start, key bool, size int) []byte {
	b := buf[:0]
	if start && key {
		b = append(b, 0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce, 0, 0)
		b = append(b, 0x65)
		n := size - len(b) + 1
		b[9], b[10] = byte(n>>8), byte(n)
	} else {
		b = append(b, 0x41)
	}
	for len(b) < size {
		b = append(b, 0x5a)
	}
	return b
}

// vp9Payload builds a VP9 payload descriptor (RFC 9628 section 4.2) with
// the B, E and P bits, then filler.
func vp9Payload(buf []byte, start, end, key bool, size int) []byte {
	d := byte(0)
	if start {
		d |= 0x08
	}
	if end {
		d |= 0x04
	}
	if !key {
		d |= 0x40
	}
	b := append(buf[:0], d)
	for len(b) < size {
		b = append(b, 0x5a)
	}
	return b
}

// av1Payload builds an AV1 aggregation header (N set on the first packet
// of a key frame), then filler.
func av1Payload(buf []byte, start, key bool, size int) []byte {
	h := byte(0x10) // W=1: one OBU element
	if start && key {
		h |= 0x08
	}
	if !start {
		h |= 0x80 // Z: continues an OBU
	}
	b := append(buf[:0], h)
	for len(b) < size {
		b = append(b, 0x5a)
	}
	return b
}

type recvTrack struct {
	id, streamID string
	kind         webrtc.RTPCodecType
	packets      atomic.Int64
	mu           sync.Mutex
	seqs         []uint16
	tss          []uint32
	ssrcs        map[uint32]bool
	keyWidths    []uint16
	firstKey     bool // the first video packet started a key frame
	ended        atomic.Bool
}

type testClient struct {
	t      testing.TB
	id     string
	pc     *webrtc.PeerConnection
	p      *Participant
	dc     *webrtc.DataChannel
	msg    chan []byte // data channel messages from the SFU
	srvMsg chan []byte // data channel messages the SFU got from us

	mu       sync.Mutex
	recv     map[string]*recvTrack // by track ID
	tracks   []TrackInfo
	dominant string
	closed   chan error

	stop      chan struct{}
	wg        sync.WaitGroup
	plis      atomic.Int64
	rrWithLSR atomic.Int64 // receiver reports from the SFU that echo our sender reports
	simSender *webrtc.RTPSender
	codec     string      // video mime type sent, "" for VP8
	pliOnly   bool        // key frames only first and on PLI
	hold      atomic.Bool // keep server offers in held instead of answering
	held      chan string
}

type clientOpts struct {
	audio, video bool
	simulcast    []string // RIDs, lowest first; empty: single layer
	net          transport.Net
	level        uint8  // audio level to send (RFC 6464), 127 silence
	videoKbps    int    // per layer (lowest); higher layers x3, x9
	videoCodec   string // mime type, default VP8
	tcp          bool   // ICE over TCP only
	// keyframesOnPLIOnly sends key frames only first and when asked
	// (PLI), as browsers do; otherwise one a second as well.
	keyframesOnPLIOnly bool
}

func clientAPI(t testing.TB, n transport.Net, tcp bool) *webrtc.API {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: "urn:ietf:params:rtp-hdrext:ssrc-audio-level"},
		webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if tcp {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	}
	if n != nil {
		se.SetNet(n)
	} else {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

// joinClient connects a new client to conference conf and starts its media.
func joinClient(t testing.TB, s *SFU, conf, id string, o clientOpts) *testClient {
	t.Helper()
	pc, err := clientAPI(t, o.net, o.tcp).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	c := &testClient{t: t, id: id, pc: pc, recv: map[string]*recvTrack{}, closed: make(chan error, 1),
		stop: make(chan struct{}), msg: make(chan []byte, 16), srvMsg: make(chan []byte, 16), held: make(chan string, 4)}
	dc, err := pc.CreateDataChannel("signalling", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.dc = dc
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		select {
		case c.msg <- m.Data:
		default:
		}
	})
	pc.OnTrack(c.onTrack)

	var audio *webrtc.TrackLocalStaticRTP
	var video []*webrtc.TrackLocalStaticRTP
	if o.audio {
		audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus,
			ClockRate: 48000, Channels: 2}, id+"-audio", id+"-stream")
		if err != nil {
			t.Fatal(err)
		}
		snd, err := pc.AddTrack(audio)
		if err != nil {
			t.Fatal(err)
		}
		c.drainSender(snd)
	}
	if o.video {
		mime := o.videoCodec
		if mime == "" {
			mime = webrtc.MimeTypeVP8
		}
		vc := webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000}
		if len(o.simulcast) == 0 {
			v, err := webrtc.NewTrackLocalStaticRTP(vc, id+"-video", id+"-stream")
			if err != nil {
				t.Fatal(err)
			}
			video = append(video, v)
			snd, err := pc.AddTrack(v)
			if err != nil {
				t.Fatal(err)
			}
			c.drainSender(snd)
		} else {
			var snd *webrtc.RTPSender
			for i, rid := range o.simulcast {
				v, err := webrtc.NewTrackLocalStaticRTP(vc, id+"-video", id+"-stream", webrtc.WithRTPStreamID(rid))
				if err != nil {
					t.Fatal(err)
				}
				video = append(video, v)
				if i == 0 {
					if snd, err = pc.AddTrack(v); err != nil {
						t.Fatal(err)
					}
				} else if err := snd.AddEncoding(v); err != nil {
					t.Fatal(err)
				}
			}
			c.drainSender(snd)
			c.simSender = snd
		}
	}

	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	h := Handler{
		OnICECandidate: func(ci webrtc.ICECandidateInit) { _ = pc.AddICECandidate(ci) },
		OnOffer: func(sdp string) {
			select {
			case <-c.stop:
				return // the client is closing
			default:
			}
			if c.hold.Load() {
				c.held <- sdp
				return
			}
			// A signalling layer delivers the answer to the client's own
			// offer before a server offer that follows it.
			deadline := time.Now().Add(testTimeout)
			for pc.SignalingState() != webrtc.SignalingStateStable && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
				c.errorf("%s: server offer: %v", id, err)
				return
			}
			ans, err := pc.CreateAnswer(nil)
			if err != nil {
				c.errorf("%s: answer: %v", id, err)
				return
			}
			if err := pc.SetLocalDescription(ans); err != nil {
				c.errorf("%s: set answer: %v", id, err)
				return
			}
			if err := c.p.HandleAnswer(ans.SDP); err != nil && !errors.Is(err, ErrClosed) {
				c.errorf("%s: HandleAnswer: %v", id, err)
			}
		},
		OnTracks: func(ti []TrackInfo) {
			c.mu.Lock()
			c.tracks = ti
			c.mu.Unlock()
		},
		OnSpeakers: func(_ []string, dominant string) {
			c.mu.Lock()
			c.dominant = dominant
			c.mu.Unlock()
		},
		OnClose: func(err error) { c.closed <- err },
		OnDataMessage: func(b []byte) {
			select {
			case c.srvMsg <- b:
			default:
			}
		},
	}
	ready := make(chan struct{})
	h2 := h
	h2.OnOffer = func(sdp string) { <-ready; h.OnOffer(sdp) }
	p, answer, err := s.Join(context.Background(), conf, id, pc.LocalDescription().SDP, h2)
	if err != nil {
		t.Fatal(err)
	}
	c.p = p
	close(ready)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	if audio != nil {
		c.wg.Add(1)
		go c.sendAudio(audio, o.level)
	}
	if len(video) > 0 {
		kbps := o.videoKbps
		if kbps == 0 {
			kbps = 100
		}
		c.wg.Add(1)
		c.codec = o.videoCodec
		c.pliOnly = o.keyframesOnPLIOnly
		go c.sendVideo(video, o.simulcast, kbps)
	}
	return c
}

func (c *testClient) drainSender(s *webrtc.RTPSender) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			pkts, _, err := s.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				switch p := p.(type) {
				case *rtcp.PictureLossIndication:
					c.plis.Add(1)
				case *rtcp.ReceiverReport:
					for _, r := range p.Reports {
						if r.LastSenderReport != 0 {
							c.rrWithLSR.Add(1)
						}
					}
				}
			}
		}
	}()
}

func (c *testClient) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	c.mu.Lock()
	rt := &recvTrack{id: tr.ID(), streamID: tr.StreamID(), kind: tr.Kind(), ssrcs: map[uint32]bool{}}
	c.recv[tr.ID()] = rt
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer rt.ended.Store(true)
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			rt.mu.Lock()
			rt.seqs = append(rt.seqs, pkt.SequenceNumber)
			rt.tss = append(rt.tss, pkt.Timestamp)
			rt.ssrcs[pkt.SSRC] = true
			if tr.Kind() == webrtc.RTPCodecTypeVideo && len(pkt.Payload) > 16 &&
				strings.EqualFold(tr.Codec().MimeType, webrtc.MimeTypeVP8) {
				p := pkt.Payload
				if p[0]&0x10 != 0 && p[5]&0x01 == 0 {
					rt.keyWidths = append(rt.keyWidths, binary.LittleEndian.Uint16(p[11:13])&0x3fff)
					if len(rt.seqs) == 1 {
						rt.firstKey = true
					}
				}
			}
			rt.mu.Unlock()
			rt.packets.Add(1)
		}
	}()
}

func (c *testClient) track(id string) *recvTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recv[id]
}

func (c *testClient) sendAudio(tr *webrtc.TrackLocalStaticRTP, level uint8) {
	defer c.wg.Done()
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: make([]byte, 60)}
	for i := 0; ; i++ {
		select {
		case <-c.stop:
			return
		case <-tk.C:
		}
		pkt.SequenceNumber = uint16(i)
		pkt.Timestamp = uint32(i * 960)
		pkt.Extensions = nil
		pkt.Extension = false
		// The audio level extension ID the client negotiated (pion
		// assigns IDs in registration order; look it up).
		if id := c.audioLevelID(); id != 0 {
			_ = pkt.SetExtension(id, []byte{level & 0x7f})
		}
		_ = tr.WriteRTP(pkt)
	}
}

func (c *testClient) audioLevelID() uint8 {
	for _, tr := range c.pc.GetTransceivers() {
		if tr.Sender() == nil || tr.Kind() != webrtc.RTPCodecTypeAudio {
			continue
		}
		for _, e := range tr.Sender().GetParameters().HeaderExtensions {
			if e.URI == "urn:ietf:params:rtp-hdrext:ssrc-audio-level" {
				return uint8(e.ID)
			}
		}
	}
	return 0
}

// sendVideo sends 30 frames/s on each layer; layer i has kbps*3^i and
// width 320*2^i. A key frame goes out every second and when a PLI arrived.
func (c *testClient) sendVideo(layers []*webrtc.TrackLocalStaticRTP, rids []string, kbps int) {
	defer c.wg.Done()
	// pion does not add the RTP stream ID (RFC 8852) to simulcast packets
	// by itself: put the mid and rid header extensions in.
	var midID, ridID uint8
	var mid string
	if c.simSender != nil {
		for _, e := range c.simSender.GetParameters().HeaderExtensions {
			switch e.URI {
			case "urn:ietf:params:rtp-hdrext:sdes:mid":
				midID = uint8(e.ID)
			case "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id":
				ridID = uint8(e.ID)
			}
		}
		for _, tr := range c.pc.GetTransceivers() {
			if tr.Sender() == c.simSender {
				mid = tr.Mid()
			}
		}
	}
	tk := time.NewTicker(33 * time.Millisecond)
	defer tk.Stop()
	seq := make([]uint16, len(layers))
	buf := make([]byte, 1500)
	lastPLI := int64(0)
	for frame := 0; ; frame++ {
		select {
		case <-c.stop:
			return
		case <-tk.C:
		}
		key := frame%30 == 0
		if c.pliOnly {
			key = frame == 0
		}
		if n := c.plis.Load(); n != lastPLI {
			lastPLI, key = n, true
		}
		for i, tr := range layers {
			rate := kbps * 1000
			for j := 0; j < i; j++ {
				rate *= 3
			}
			frameBytes := rate / 8 / 30
			if key {
				frameBytes *= 3
			}
			npk := (frameBytes + 999) / 1000
			for k := 0; k < npk; k++ {
				w := uint16(320 << i)
				size := min(1000, frameBytes-k*1000) + 20
				var payload []byte
				switch c.codec {
				case webrtc.MimeTypeH264:
					payload = h264Payload(buf, k == 0, key, size)
				case webrtc.MimeTypeVP9:
					payload = vp9Payload(buf, k == 0, k == npk-1, key, size)
				case webrtc.MimeTypeAV1:
					payload = av1Payload(buf, k == 0, key, size)
				default:
					payload = vp8Payload(buf, uint16(frame)&0x7fff, uint8(frame), k == 0, key, w, w*9/16, size)
				}
				pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq[i],
					Timestamp: uint32(frame * 3000), Marker: k == npk-1}, Payload: payload}
				if midID != 0 && ridID != 0 {
					_ = pkt.SetExtension(midID, []byte(mid))
					_ = pkt.SetExtension(ridID, []byte(rids[i]))
				}
				seq[i]++
				_ = tr.WriteRTP(pkt)
			}
		}
	}
}

func (c *testClient) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	_ = c.pc.Close()
	c.wg.Wait()
}

// errorf fails the test unless the client is being closed.
func (c *testClient) errorf(format string, args ...any) {
	select {
	case <-c.stop:
	default:
		c.t.Errorf(format, args...)
	}
}
