package callclient

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

const audioLevelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

// media is the participant's PeerConnection, data channel and senders.
type media struct {
	p      *Participant
	pc     *webrtc.PeerConnection
	dc     *webrtc.DataChannel
	noPong atomic.Bool
	plis   atomic.Int64 // PLIs received
	// keyReq is a PLI the encoder honours: the next frame is a key frame.
	keyReq atomic.Bool
	// lastKeyReq is when the last honoured PLI arrived, unix ns.
	lastKeyReq atomic.Int64
	stop       chan struct{}
	wg         sync.WaitGroup
	negMu      sync.Mutex // serialises applying descriptions
	dcMu       sync.Mutex // serialises data-channel sends
}

// newAPI is a pion API with the default codecs and interceptors, the
// audio-level header extension, and ICE on loopback UDP only.
func newAPI() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: audioLevelURI},
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
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

func newMedia(p *Participant) (*media, error) {
	api, err := newAPI()
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	m := &media{p: p, pc: pc, stop: make(chan struct{})}
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			m.mark(func(ph *Phases) *time.Time { return &ph.ICEConnected })
		}
	})
	pc.SCTP().Transport().OnStateChange(func(s webrtc.DTLSTransportState) {
		if s == webrtc.DTLSTransportStateConnected {
			m.mark(func(ph *Phases) *time.Time { return &ph.DTLSConnected })
		}
	})
	pc.OnTrack(m.onTrack)
	dc, err := pc.CreateDataChannel("signalling", nil)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	m.dc = dc
	dc.OnMessage(func(msg webrtc.DataChannelMessage) { p.onData(msg.Data) })
	dc.OnOpen(func() {
		// Any message tells the focus the channel works; it then sends
		// the current metadata (signalling/README.md, section 5).
		_ = m.sendDC(typePing, struct{}{})
		p.subscribe()
	})
	if p.opts.Publish {
		if err := m.addSenders(); err != nil {
			_ = pc.Close()
			return nil, err
		}
	}
	return m, nil
}

// mark records the first time of a phase.
func (m *media) mark(field func(*Phases) *time.Time) {
	now := time.Now()
	m.p.mu.Lock()
	defer m.p.mu.Unlock()
	if t := field(&m.p.phases); t.IsZero() {
		*t = now
	}
}

func (m *media) addSenders() error {
	name := m.p.opts.Name
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus,
		ClockRate: 48000, Channels: 2}, name+"-audio", name+"-stream")
	if err != nil {
		return err
	}
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8,
		ClockRate: 90000}, name+"-video", name+"-stream")
	if err != nil {
		return err
	}
	for _, tr := range []*webrtc.TrackLocalStaticRTP{audio, video} {
		snd, err := m.pc.AddTrack(tr)
		if err != nil {
			return err
		}
		m.wg.Go(func() { m.readRTCP(snd) })
	}
	m.wg.Go(func() { m.sendAudio(audio) })
	m.wg.Go(func() { m.sendVideo(video) })
	return nil
}

// minKeyframeRequestInterval is how long after a key frame request it
// honoured a browser's encoder ignores the next ones: libwebrtc's
// EncoderRtcpFeedback (kMinKeyframeSendIntervalMs) drops a PLI or FIR that
// arrives within 300 ms of the last one it acted on.
const minKeyframeRequestInterval = 300 * time.Millisecond

// readRTCP drains a sender's RTCP (the interceptors need it read), counts
// picture loss indications and, like a browser, asks the encoder for a key
// frame for those not within minKeyframeRequestInterval of the last one
// honoured.
func (m *media) readRTCP(snd *webrtc.RTPSender) {
	for {
		pkts, _, err := snd.ReadRTCP()
		if err != nil {
			return
		}
		for _, pk := range pkts {
			if _, ok := pk.(*rtcp.PictureLossIndication); ok {
				m.plis.Add(1)
				now := time.Now().UnixNano()
				if last := m.lastKeyReq.Load(); last == 0 || now-last >= int64(minKeyframeRequestInterval) {
					m.lastKeyReq.Store(now)
					m.keyReq.Store(true)
				}
			}
		}
	}
}

// offer creates the offer and waits for ICE gathering to complete.
func (m *media) offer() (string, error) {
	m.negMu.Lock()
	defer m.negMu.Unlock()
	offer, err := m.pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(m.pc)
	if err := m.pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-time.After(10 * time.Second):
		return "", fmt.Errorf("callclient: ICE gathering did not complete")
	}
	return m.pc.LocalDescription().SDP, nil
}

func (m *media) setAnswer(sdp string) error {
	m.negMu.Lock()
	defer m.negMu.Unlock()
	return m.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
}

// negotiate applies an m.call.negotiate description from the focus and
// answers an offer on the transport it came by.
func (m *media) negotiate(d sessionDescription, viaDC bool) {
	m.negMu.Lock()
	defer m.negMu.Unlock()
	if d.Type == "answer" {
		if err := m.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: d.SDP}); err != nil {
			m.p.errorf("negotiate answer: %v", err)
		}
		return
	}
	// The answer to our own offer may still be on its way (by /sync,
	// while this offer came by the data channel).
	deadline := time.Now().Add(10 * time.Second)
	for m.pc.SignalingState() != webrtc.SignalingStateStable {
		if time.Now().After(deadline) {
			m.p.errorf("server offer while %s", m.pc.SignalingState())
			return
		}
		m.negMu.Unlock()
		select {
		case <-m.stop:
			m.negMu.Lock()
			return
		case <-time.After(5 * time.Millisecond):
		}
		m.negMu.Lock()
	}
	if err := m.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: d.SDP}); err != nil {
		m.p.errorf("server offer: %v", err)
		return
	}
	ans, err := m.pc.CreateAnswer(nil)
	if err != nil {
		m.p.errorf("create answer: %v", err)
		return
	}
	if err := m.pc.SetLocalDescription(ans); err != nil {
		m.p.errorf("set answer: %v", err)
		return
	}
	desc := sessionDescription{Type: "answer", SDP: ans.SDP}
	if viaDC {
		if err := m.sendDC(typeNegotiate, map[string]any{"description": desc}); err != nil {
			m.p.errorf("send answer: %v", err)
		}
		return
	}
	c := m.p.callFields()
	c["description"] = desc
	if err := m.p.send(m.p.ctx, typeNegotiate, c); err != nil {
		m.p.errorf("send answer: %v", err)
	}
}

func (m *media) dcOpen() bool { return m.dc.ReadyState() == webrtc.DataChannelStateOpen }

// sendDC sends one MSC3898 data-channel message.
func (m *media) sendDC(typ string, content any) error {
	b, err := json.Marshal(map[string]any{"type": typ, "content": content})
	if err != nil {
		return err
	}
	m.dcMu.Lock()
	defer m.dcMu.Unlock()
	return m.dc.Send(b)
}

func (m *media) offeredTrack(trackID string) bool {
	rd := m.pc.CurrentRemoteDescription()
	return rd != nil && strings.Contains(rd.SDP, " "+trackID+"\r\n")
}

func (m *media) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	kind := tr.Kind().String()
	rt := &recvTrack{kind: kind}
	p := m.p
	p.mu.Lock()
	p.recv[tr.ID()] = rt
	p.streamOf[tr.ID()] = tr.StreamID()
	p.mu.Unlock()
	m.wg.Go(func() {
		keyed := kind != "video"
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if rt.packets.Add(1) == 1 {
				m.mark(func(ph *Phases) *time.Time { return &ph.FirstRTP })
			}
			if keyed {
				continue
			}
			if !vp8KeyframeStart(pkt.Payload) {
				// Undecodable until a key frame comes.
				p.mu.Lock()
				p.phases.VideoBeforeKeyframe++
				p.mu.Unlock()
				continue
			}
			keyed = true
			m.mark(func(ph *Phases) *time.Time { return &ph.FirstVideo })
		}
	})
}

// vp8KeyframeStart reports whether payload is the first packet of a VP8
// key frame: the start of partition 0 (RFC 7741 section 4.2: S set, PID
// 0) whose payload header has P clear (RFC 6386 section 9.1).
func vp8KeyframeStart(payload []byte) bool {
	var v codecs.VP8Packet
	if _, err := v.Unmarshal(payload); err != nil {
		return false
	}
	return v.S == 1 && v.PID == 0 && len(v.Payload) > 0 && v.Payload[0]&0x01 == 0
}

func (m *media) audioLevelID() uint8 {
	for _, tr := range m.pc.GetTransceivers() {
		if tr.Sender() == nil || tr.Kind() != webrtc.RTPCodecTypeAudio {
			continue
		}
		for _, e := range tr.Sender().GetParameters().HeaderExtensions {
			if e.URI == audioLevelURI {
				return uint8(e.ID)
			}
		}
	}
	return 0
}

// sendAudio sends 50 packets/s of Opus-sized payloads with the RFC 6464
// audio level.
func (m *media) sendAudio(tr *webrtc.TrackLocalStaticRTP) {
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: make([]byte, 60)}
	var extID uint8
	for i := 0; ; i++ {
		select {
		case <-m.stop:
			return
		case <-tk.C:
		}
		pkt.SequenceNumber = uint16(i)
		pkt.Timestamp = uint32(i * 960)
		pkt.Extensions, pkt.Extension = nil, false
		if extID == 0 {
			extID = m.audioLevelID()
		}
		if extID != 0 {
			_ = pkt.SetExtension(extID, []byte{m.p.opts.AudioLevel & 0x7f})
		}
		_ = tr.WriteRTP(pkt)
	}
}

// sendVideo sends 30 frames/s of VP8 (RFC 7741 payload descriptor, key
// frame header on key frames), two packets a frame; a key frame first,
// every Options.KeyframeInterval and after each PLI it honours (see
// readRTCP).
func (m *media) sendVideo(tr *webrtc.TrackLocalStaticRTP) {
	tk := time.NewTicker(33 * time.Millisecond)
	defer tk.Stop()
	var seq uint16
	for frame := 0; ; frame++ {
		select {
		case <-m.stop:
			return
		case <-tk.C:
		}
		key := frame == 0
		if ki := m.p.opts.KeyframeInterval; ki > 0 {
			key = frame%max(1, int(ki/(33*time.Millisecond))) == 0
		}
		if m.keyReq.Swap(false) {
			key = true
		}
		for k, pl := range VP8Frame(frame, key) {
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(frame * 3000),
				Marker: k == 1}, Payload: pl}
			seq++
			_ = tr.WriteRTP(pkt)
		}
	}
}

func (m *media) close() {
	select {
	case <-m.stop:
		return
	default:
	}
	close(m.stop)
	_ = m.pc.Close()
	m.wg.Wait()
}
