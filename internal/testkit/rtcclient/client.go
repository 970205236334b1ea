// Package rtcclient is the one WebRTC test client of Switchboard's tests and
// tools: a pion PeerConnection with a data channel named "signalling" that
// publishes synthetic Opus and video (VP8 by default; H.264, VP9 and AV1
// payloads for codec tests; simulcast layers with RFC 8852 stream IDs),
// answers picture loss indications with key frames the way a browser does,
// and records what it receives, track by track.
//
// It knows no signalling: the caller carries descriptions and candidates
// to the server (the sfu tests call the SFU in-process; callclient sends
// MSC3898 to-device messages through a homeserver). ICE runs on loopback
// UDP, loopback TCP, or a pion vnet network the caller hands in.
//
// It is a test kit: tests and the tools under bench/, loadtest/ and tests/
// import it, the switchboard program never does (imports_test.go at the
// module root). It imports no package of ours but testkit.
package rtcclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/transport/v4"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// AudioLevelURI is the client-to-mixer audio level header extension
// (RFC 6464) that the client negotiates and sends.
const AudioLevelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

// Errors of the package.
var (
	// ErrConfig is returned by New for a configuration it cannot build.
	ErrConfig = errors.New("rtcclient: bad config")
	// ErrNotStable is returned by Offer and AnswerOffer when an offer
	// stays unanswered until the context ends.
	ErrNotStable = errors.New("rtcclient: signalling state not stable")
)

// Config says what a client publishes and how it connects. The zero value
// is a client that publishes nothing, on loopback UDP.
type Config struct {
	// Name prefixes the published IDs: stream <Name>-stream, tracks
	// <Name>-audio and <Name>-video.
	Name string
	// Audio publishes 50 packets/s of Opus-sized payloads carrying the
	// RFC 6464 AudioLevel (0 is loudest, 127 silence).
	Audio      bool
	AudioLevel uint8
	// Video publishes 30 frames/s of VideoCodec (a mime type; default
	// VP8), in the layers Simulcast names (RIDs, lowest first; none: one
	// layer).
	Video      bool
	VideoCodec string
	Simulcast  []string
	// VideoKbps is the lowest layer's rate; layer i sends VideoKbps*3^i
	// and is 320*2^i pixels wide, key frames three times the size. Zero
	// sends two 400-byte packets a frame, 320x180 (VP8Frame).
	VideoKbps int
	// KeyframeInterval is how often video has a key frame besides the
	// first and those a PLI asks for; zero: only those, as browsers do.
	KeyframeInterval time.Duration
	// PLIHoldoff ignores a PLI that arrives within this long of the last
	// one honoured (libwebrtc's EncoderRtcpFeedback: 300 ms, see
	// MinKeyframeRequestInterval); zero honours every PLI.
	PLIHoldoff time.Duration
	// Record keeps each received packet's sequence number and timestamp
	// (Track.Seqs, Track.Timestamps); otherwise only counts and key frames.
	Record bool
	// Net is a pion vnet network for ICE; nil is loopback only.
	Net transport.Net
	// TCP runs ICE over TCP instead of UDP.
	TCP bool
	// OnData receives the data channel's messages; OnDataOpen runs when it
	// opens. Both may be nil; they run on pion's goroutines.
	OnData     func([]byte)
	OnDataOpen func()
}

// MinKeyframeRequestInterval is how long after an honoured key frame
// request a browser's encoder ignores the next ones: libwebrtc's
// EncoderRtcpFeedback (kMinKeyframeSendIntervalMs).
const MinKeyframeRequestInterval = 300 * time.Millisecond

// Client is one WebRTC endpoint. Its methods are safe for concurrent use.
type Client struct {
	cfg Config
	pc  *webrtc.PeerConnection
	dc  *webrtc.DataChannel

	audio     *webrtc.TrackLocalStaticRTP
	video     []*webrtc.TrackLocalStaticRTP
	simSender *webrtc.RTPSender

	plis      atomic.Int64
	rrWithLSR atomic.Int64 // receiver reports that echo one of our sender reports
	// keyReq is a PLI the encoder honours: the next frame is a key frame.
	keyReq atomic.Bool
	// lastKeyReq is when the last honoured PLI arrived, unix ns.
	lastKeyReq atomic.Int64
	audioExt   atomic.Uint32 // negotiated audio level extension ID, once known

	negMu sync.Mutex // serialises applying descriptions
	dcMu  sync.Mutex // serialises data-channel sends

	stopSend  chan struct{} // closed by StopSending: senders return
	stopOnce  sync.Once
	startOnce sync.Once
	closeOnce sync.Once
	wg        sync.WaitGroup

	// mu guards the fields below.
	mu            sync.Mutex
	recv          map[string]*Track // by track ID
	iceConnected  time.Time
	dtlsConnected time.Time
}

// NewAPI is the pion API every client uses: default codecs and
// interceptors, the audio level header extension, no mDNS, and ICE on
// loopback UDP (or TCP), or on n when it is not nil.
func NewAPI(n transport.Net, tcp bool) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: AudioLevelURI},
		webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
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
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// New builds the PeerConnection with its data channel and published tracks.
// Nothing is sent before Start.
func New(cfg Config) (*Client, error) {
	if len(cfg.Simulcast) > 3 {
		return nil, fmt.Errorf("%w: %d simulcast layers, at most 3", ErrConfig, len(cfg.Simulcast))
	}
	api, err := NewAPI(cfg.Net, cfg.TCP)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, pc: pc, stopSend: make(chan struct{}), recv: map[string]*Track{}}
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			c.mark(&c.iceConnected)
		}
	})
	pc.SCTP().Transport().OnStateChange(func(s webrtc.DTLSTransportState) {
		if s == webrtc.DTLSTransportStateConnected {
			c.mark(&c.dtlsConnected)
		}
	})
	pc.OnTrack(c.onTrack)
	if c.dc, err = pc.CreateDataChannel("signalling", nil); err != nil {
		_ = pc.Close()
		return nil, err
	}
	if cfg.OnData != nil {
		c.dc.OnMessage(func(m webrtc.DataChannelMessage) { cfg.OnData(m.Data) })
	}
	if cfg.OnDataOpen != nil {
		c.dc.OnOpen(cfg.OnDataOpen)
	}
	if err := c.addTracks(); err != nil {
		_ = pc.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) addTracks() error {
	name := c.cfg.Name
	if c.cfg.Audio {
		audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus,
			ClockRate: 48000, Channels: 2}, name+"-audio", name+"-stream")
		if err != nil {
			return err
		}
		snd, err := c.pc.AddTrack(audio)
		if err != nil {
			return err
		}
		c.audio = audio
		c.readRTCP(snd)
	}
	if !c.cfg.Video {
		return nil
	}
	mime := c.cfg.VideoCodec
	if mime == "" {
		mime = webrtc.MimeTypeVP8
	}
	vc := webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000}
	if len(c.cfg.Simulcast) == 0 {
		v, err := webrtc.NewTrackLocalStaticRTP(vc, name+"-video", name+"-stream")
		if err != nil {
			return err
		}
		snd, err := c.pc.AddTrack(v)
		if err != nil {
			return err
		}
		c.video = []*webrtc.TrackLocalStaticRTP{v}
		c.readRTCP(snd)
		return nil
	}
	var snd *webrtc.RTPSender
	for i, rid := range c.cfg.Simulcast {
		v, err := webrtc.NewTrackLocalStaticRTP(vc, name+"-video", name+"-stream", webrtc.WithRTPStreamID(rid))
		if err != nil {
			return err
		}
		c.video = append(c.video, v)
		if i == 0 {
			if snd, err = c.pc.AddTrack(v); err != nil {
				return err
			}
		} else if err := snd.AddEncoding(v); err != nil {
			return err
		}
	}
	c.simSender = snd
	c.readRTCP(snd)
	return nil
}

// Start starts sending the published tracks; later calls do nothing.
func (c *Client) Start() {
	c.startOnce.Do(func() {
		if c.audio != nil {
			c.wg.Go(func() { c.sendAudio(c.audio) })
		}
		if len(c.video) > 0 {
			c.wg.Go(func() { c.sendVideo(c.video, c.cfg.Simulcast, c.cfg.VideoCodec, c.simSender) })
		}
	})
}

// AddVideoTrack adds one more VP8 track (a screen share) and sends on it at
// VideoKbps, with the same key frame rules, until StopSending or Close.
// Renegotiating is the caller's business; RemoveTrack the returned sender
// to stop it.
func (c *Client) AddVideoTrack(trackID, streamID string) (*webrtc.RTPSender, error) {
	v, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
		trackID, streamID)
	if err != nil {
		return nil, err
	}
	snd, err := c.pc.AddTrack(v)
	if err != nil {
		return nil, err
	}
	c.readRTCP(snd)
	c.wg.Go(func() { c.sendVideo([]*webrtc.TrackLocalStaticRTP{v}, nil, webrtc.MimeTypeVP8, nil) })
	return snd, nil
}

// StopSending stops the senders; the connection stays up.
func (c *Client) StopSending() { c.stopOnce.Do(func() { close(c.stopSend) }) }

// Close stops sending, closes the PeerConnection and waits for the
// client's goroutines.
func (c *Client) Close() {
	c.closeOnce.Do(func() {
		c.StopSending()
		_ = c.pc.Close()
		c.wg.Wait()
	})
}

// PC is the PeerConnection, for what a test does by hand.
func (c *Client) PC() *webrtc.PeerConnection { return c.pc }

// SimulcastSender is the sender of the simulcast layers (nil without).
func (c *Client) SimulcastSender() *webrtc.RTPSender { return c.simSender }

// PLIs counts the picture loss indications received on published tracks.
func (c *Client) PLIs() int64 { return c.plis.Load() }

// ReportsWithLSR counts the receiver report blocks that echo one of the
// client's sender reports (RFC 3550 section 6.4.1, LSR).
func (c *Client) ReportsWithLSR() int64 { return c.rrWithLSR.Load() }

// Connected returns when ICE and DTLS first connected (zero: not yet).
func (c *Client) Connected() (ice, dtls time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.iceConnected, c.dtlsConnected
}

func (c *Client) mark(t *time.Time) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.IsZero() {
		*t = now
	}
}

// Offer creates an offer, sets it and returns it with every candidate in
// it. It first waits for the signalling state to be stable (a server offer
// in progress is answered first), then for ICE gathering, until ctx ends.
func (c *Client) Offer(ctx context.Context) (string, error) {
	if err := c.lockStable(ctx); err != nil {
		return "", err
	}
	defer c.negMu.Unlock()
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("rtcclient: ICE gathering: %w", ctx.Err())
	}
	return c.pc.LocalDescription().SDP, nil
}

// SetAnswer applies the server's answer to the client's offer.
func (c *Client) SetAnswer(sdp string) error {
	c.negMu.Lock()
	defer c.negMu.Unlock()
	return c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
}

// AnswerOffer applies a server's offer and returns the client's answer.
// The answer to the client's own offer may still be on its way (a server
// offer can overtake it on another transport), so it first waits, until
// ctx ends, for the signalling state to be stable.
func (c *Client) AnswerOffer(ctx context.Context, sdp string) (string, error) {
	if err := c.lockStable(ctx); err != nil {
		return "", err
	}
	defer c.negMu.Unlock()
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return "", fmt.Errorf("server offer: %w", err)
	}
	ans, err := c.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("create answer (state %s, signalling %s): %w", c.pc.ConnectionState(), c.pc.SignalingState(), err)
	}
	if err := c.pc.SetLocalDescription(ans); err != nil {
		return "", fmt.Errorf("set answer: %w", err)
	}
	return ans.SDP, nil
}

// lockStable waits until the signalling state is stable and returns with
// negMu held, or returns ErrNotStable when ctx ends first.
func (c *Client) lockStable(ctx context.Context) error {
	stable := func() bool { return c.pc.SignalingState() == webrtc.SignalingStateStable }
	for {
		if err := testkit.Poll(ctx, stable); err != nil {
			return fmt.Errorf("%w (%s): %w", ErrNotStable, c.pc.SignalingState(), err)
		}
		c.negMu.Lock()
		if stable() {
			return nil
		}
		c.negMu.Unlock()
	}
}

// AddCandidate adds a remote ICE candidate.
func (c *Client) AddCandidate(ci webrtc.ICECandidateInit) error { return c.pc.AddICECandidate(ci) }

// OfferedTrack reports whether the server's current description sends
// trackID to the client.
func (c *Client) OfferedTrack(trackID string) bool {
	rd := c.pc.CurrentRemoteDescription()
	return rd != nil && strings.Contains(rd.SDP, " "+trackID+"\r\n")
}

// DataOpen reports whether the data channel is open.
func (c *Client) DataOpen() bool { return c.dc.ReadyState() == webrtc.DataChannelStateOpen }

// SendData sends one data-channel message.
func (c *Client) SendData(b []byte) error {
	c.dcMu.Lock()
	defer c.dcMu.Unlock()
	return c.dc.Send(b)
}

// readRTCP drains a sender's RTCP (the interceptors need it read), counts
// PLIs and receiver reports that echo ours and, like a browser, asks the
// encoder for a key frame for each PLI not within PLIHoldoff of the last
// one honoured.
func (c *Client) readRTCP(snd *webrtc.RTPSender) {
	c.wg.Go(func() {
		for {
			pkts, _, err := snd.ReadRTCP()
			if err != nil {
				return
			}
			for _, pk := range pkts {
				switch pk := pk.(type) {
				case *rtcp.PictureLossIndication:
					c.plis.Add(1)
					now := time.Now().UnixNano()
					if last := c.lastKeyReq.Load(); last == 0 || now-last >= int64(c.cfg.PLIHoldoff) {
						c.lastKeyReq.Store(now)
						c.keyReq.Store(true)
					}
				case *rtcp.ReceiverReport:
					for _, r := range pk.Reports {
						if r.LastSenderReport != 0 {
							c.rrWithLSR.Add(1)
						}
					}
				}
			}
		}
	})
}
