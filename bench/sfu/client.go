package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// writeFunc sends one packet of stream kind.
type writeFunc func(kind packetKind, seq uint16, ts uint32, marker bool, payload []byte)

// publishLoop sends the synthetic stream (see schedule) until stop is
// closed, stamping each payload with the time just before write. A layer
// sends a key frame every keyframeEvery frames and after a keyframe
// request (keyPending).
func publishLoop(stop <-chan struct{}, keyPending *[3]atomic.Bool, sent *atomic.Uint64, write writeFunc) {
	var sched schedule
	var seqs [4]uint16 // audio, then layers
	var key [3]bool
	buf := make([]byte, 1500)
	start := time.Now()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		kind, frame, idx, npk, due := sched.next()
		if wait := due - time.Since(start); wait > 200*time.Microsecond {
			timer.Reset(wait)
			select {
			case <-stop:
				return
			case <-timer.C:
			}
		} else {
			select {
			case <-stop:
				return
			default:
			}
		}
		var ts uint32
		si := 0
		if kind == audioStream {
			ts = uint32(frame * 960) // 48 kHz, 20 ms
		} else {
			l := int(kind)
			si = l + 1
			ts = uint32(frame * 3000) // 90 kHz, 30 frames/s
			if idx == 0 {
				key[l] = frame%keyframeEvery == 0 || keyPending[l].Swap(false)
			}
		}
		payload := buildPayload(buf, kind, frame, idx, kind != audioStream && key[kind])
		stampPayload(payload, time.Now())
		write(kind, seqs[si], ts, idx == npk-1, payload)
		seqs[si]++
		sent.Add(1)
	}
}

// pionClient is a participant on a real pion/webrtc PeerConnection: it
// publishes Opus-sized audio and three VP8 simulcast layers (if publish),
// and receives what the SFU sends, recording the one-way delay of each
// packet.
type pionClient struct {
	id, conf string
	publish  bool
	pc       *webrtc.PeerConnection
	ctl      *child
	rec      *recorder

	audio     *webrtc.TrackLocalStaticRTP
	video     [3]*webrtc.TrackLocalStaticRTP
	simSender *webrtc.RTPSender

	keyPending [3]atomic.Bool
	offers     chan string
	stop       chan struct{}
	wg         sync.WaitGroup
	errs       chan error
}

// prefixWriter prefixes each log line of one client with its ID.
type prefixWriter struct{ prefix string }

func (w prefixWriter) Write(b []byte) (int, error) {
	_, err := fmt.Fprintf(os.Stderr, "%s: %s", w.prefix, b)
	return len(b), err
}

func clientAPI(id string) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.Writer = prefixWriter{prefix: "client " + id}
	se := webrtc.SettingEngine{LoggerFactory: lf}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

func newPionClient(ctl *child, conf, id string, publish bool, rec *recorder) (*pionClient, error) {
	api, err := clientAPI(id)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	c := &pionClient{id: id, conf: conf, publish: publish, pc: pc, ctl: ctl, rec: rec,
		offers: make(chan string, 4), stop: make(chan struct{}), errs: make(chan error, 1)}
	if _, err := pc.CreateDataChannel("bench", nil); err != nil {
		return nil, c.fail(err)
	}
	pc.OnTrack(c.onTrack)
	if publish {
		c.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus,
			ClockRate: 48000, Channels: 2}, id+"-audio", id)
		if err != nil {
			return nil, c.fail(err)
		}
		snd, err := pc.AddTrack(c.audio)
		if err != nil {
			return nil, c.fail(err)
		}
		c.drainRTCP(snd)
		vc := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
		for i, rid := range layerRIDs {
			v, err := webrtc.NewTrackLocalStaticRTP(vc, id+"-video", id, webrtc.WithRTPStreamID(rid))
			if err != nil {
				return nil, c.fail(err)
			}
			c.video[i] = v
			if i == 0 {
				if c.simSender, err = pc.AddTrack(v); err != nil {
					return nil, c.fail(err)
				}
			} else if err := c.simSender.AddEncoding(v); err != nil {
				return nil, c.fail(err)
			}
		}
		c.drainRTCP(c.simSender)
	}
	return c, nil
}

func (c *pionClient) fail(err error) error {
	_ = c.pc.Close()
	return fmt.Errorf("client %s: %w", c.id, err)
}

// join offers to the SFU (through the child), applies the answer and
// starts publishing.
func (c *pionClient) join() error {
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(offer); err != nil {
		return err
	}
	<-gathered
	r, err := c.ctl.call(msg{Op: "join", Conf: c.conf, ID: c.id, SDP: c.pc.LocalDescription().SDP})
	if err != nil {
		return fmt.Errorf("join %s: %w", c.id, err)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: r.SDP}); err != nil {
		return err
	}
	c.wg.Add(1)
	go c.answerOffers()
	if c.publish {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.publishPion()
		}()
	}
	return nil
}

// answerOffers answers the SFU's renegotiation offers (new tracks to
// receive), one at a time.
func (c *pionClient) answerOffers() {
	defer c.wg.Done()
	for {
		var sdp string
		select {
		case <-c.stop:
			return
		case sdp = <-c.offers:
		}
		err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp})
		var ans webrtc.SessionDescription
		if err == nil {
			ans, err = c.pc.CreateAnswer(nil)
		}
		if err == nil {
			err = c.pc.SetLocalDescription(ans)
		}
		if err == nil {
			_, err = c.ctl.call(msg{Op: "answer", ID: c.id, SDP: ans.SDP})
		}
		if err != nil {
			select {
			case <-c.stop:
			case c.errs <- fmt.Errorf("client %s: answering server offer: %w", c.id, err):
			default:
			}
		}
	}
}

// deliverOffer queues a server offer for answerOffers.
func (c *pionClient) deliverOffer(sdp string) {
	select {
	case c.offers <- sdp:
	case <-c.stop:
	}
}

func (c *pionClient) drainRTCP(s *webrtc.RTPSender) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, _, err := s.Read(buf)
			if err != nil {
				return
			}
			pkts, err := rtcp.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			for _, p := range pkts {
				switch p.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					for i := range c.keyPending {
						c.keyPending[i].Store(true)
					}
				}
			}
		}
	}()
}

func (c *pionClient) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			c.rec.observe(buf[:n], time.Now())
		}
	}()
}

// publishPion sends the stream on the PeerConnection. pion does not put
// the mid and rid header extensions (RFC 8852) on simulcast packets by
// itself, so they are added here.
func (c *pionClient) publishPion() {
	var midID, ridID uint8
	for _, e := range c.simSender.GetParameters().HeaderExtensions {
		switch e.URI {
		case "urn:ietf:params:rtp-hdrext:sdes:mid":
			midID = uint8(e.ID)
		case "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id":
			ridID = uint8(e.ID)
		}
	}
	var mid string
	for _, tr := range c.pc.GetTransceivers() {
		if tr.Sender() == c.simSender {
			mid = tr.Mid()
		}
	}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}}
	publishLoop(c.stop, &c.keyPending, &c.rec.sent, func(kind packetKind, seq uint16, ts uint32, marker bool, payload []byte) {
		pkt.Header = rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: marker,
			Extensions: pkt.Header.Extensions[:0]}
		pkt.Payload = payload
		if kind == audioStream {
			_ = c.audio.WriteRTP(pkt)
			return
		}
		if midID != 0 && ridID != 0 {
			_ = pkt.SetExtension(midID, []byte(mid))
			_ = pkt.SetExtension(ridID, []byte(layerRIDs[kind]))
		}
		_ = c.video[kind].WriteRTP(pkt)
	})
}

func (c *pionClient) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	_ = c.pc.Close()
	c.wg.Wait()
}

// udpClient is a participant of the reference run: a plain UDP socket that
// sends the same stream as RTP without SRTP to its forwarder socket, and
// receives what the forwarder sends it.
type udpClient struct {
	conn  *net.UDPConn
	index int // publisher index, for SSRCs
	rec   *recorder
	dest  *net.UDPAddr
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newUDPClient(index int, rec *recorder) (*udpClient, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(4 << 20)
	c := &udpClient{conn: conn, index: index, rec: rec, stop: make(chan struct{})}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			rec.observe(buf[:n], time.Now())
		}
	}()
	return c, nil
}

// ssrc is the SSRC of stream kind of publisher index in the reference run.
func ssrc(index int, kind packetKind) uint32 {
	return uint32(index+1)<<8 | uint32(kind+1)
}

func (c *udpClient) addr() string { return c.conn.LocalAddr().String() }

// startPublishing sends the stream to the forwarder's socket at dest.
func (c *udpClient) startPublishing(dest *net.UDPAddr) {
	c.dest = dest
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		out := make([]byte, 1500)
		h := rtp.Header{Version: 2}
		publishLoop(c.stop, new([3]atomic.Bool), &c.rec.sent, func(kind packetKind, seq uint16, ts uint32, marker bool, payload []byte) {
			h.SequenceNumber, h.Timestamp, h.Marker, h.SSRC = seq, ts, marker, ssrc(c.index, kind)
			h.PayloadType = 96
			if kind == audioStream {
				h.PayloadType = 111
			}
			n, err := h.MarshalTo(out)
			if err != nil {
				return
			}
			n += copy(out[n:], payload)
			_, _ = c.conn.WriteToUDP(out[:n], dest)
		})
	}()
}

func (c *udpClient) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	_ = c.conn.Close()
	c.wg.Wait()
}

var errNoTraffic = errors.New("sfubench: traffic did not reach the expected rate")
