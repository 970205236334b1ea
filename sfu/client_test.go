package sfu

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v4"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-chat/switchboard/internal/testkit/rtcclient"
)

// This file is the test harness: the test kit's WebRTC client (rtcclient),
// which publishes synthetic Opus and VP8 (real VP8 payload descriptors and
// key frame headers) and records what it receives, signalling with an SFU
// in-process.

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

// recvTrack is what a client received on one track.
type recvTrack = rtcclient.Track

type testClient struct {
	t      testing.TB
	id     string
	rtc    *rtcclient.Client
	pc     *webrtc.PeerConnection
	p      *Participant
	msg    chan []byte // data channel messages from the SFU
	srvMsg chan []byte // data channel messages the SFU got from us

	mu       sync.Mutex
	tracks   []TrackInfo
	dominant string
	closed   chan error

	stop chan struct{} // closed by close
	hold atomic.Bool   // keep server offers in held instead of answering
	held chan string
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
	api, err := rtcclient.NewAPI(n, tcp)
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// joinClient connects a new client to conference conf and starts its media.
func joinClient(t testing.TB, s *SFU, conf, id string, o clientOpts) *testClient {
	t.Helper()
	c := &testClient{t: t, id: id, closed: make(chan error, 1), stop: make(chan struct{}),
		msg: make(chan []byte, 16), srvMsg: make(chan []byte, 16), held: make(chan string, 4)}
	cfg := rtcclient.Config{Name: id, Audio: o.audio, AudioLevel: o.level, Video: o.video,
		VideoCodec: o.videoCodec, Simulcast: o.simulcast, VideoKbps: o.videoKbps, KeyframeInterval: time.Second,
		Record: true, Net: o.net, TCP: o.tcp,
		OnData: func(b []byte) {
			select {
			case c.msg <- b:
			default:
			}
		}}
	if cfg.VideoKbps == 0 {
		cfg.VideoKbps = 100
	}
	if o.keyframesOnPLIOnly {
		cfg.KeyframeInterval = 0
	}
	rtc, err := rtcclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.rtc, c.pc = rtc, rtc.PC()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	offer, err := rtc.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := Handler{
		OnICECandidate: func(ci webrtc.ICECandidateInit) { _ = rtc.AddCandidate(ci) },
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
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			ans, err := rtc.AnswerOffer(ctx, sdp)
			if err != nil {
				c.errorf("%s: %v", id, err)
				return
			}
			if err := c.p.HandleAnswer(ans); err != nil && !errors.Is(err, ErrClosed) {
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
	p, answer, err := s.Join(context.Background(), conf, id, offer, h2)
	if err != nil {
		t.Fatal(err)
	}
	c.p = p
	close(ready)
	if err := rtc.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	rtc.Start()
	return c
}

func (c *testClient) track(id string) *recvTrack { return c.rtc.Track(id) }

func (c *testClient) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.rtc.Close()
}

// errorf fails the test unless the client is being closed.
func (c *testClient) errorf(format string, args ...any) {
	select {
	case <-c.stop:
	default:
		c.t.Errorf(format, args...)
	}
}
