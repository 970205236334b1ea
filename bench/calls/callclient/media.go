package callclient

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-chat/switchboard/internal/testkit/rtcclient"
)

// media is the participant's WebRTC side: the test kit's client, with the
// MSC3898 data-channel messages on top.
type media struct {
	p      *Participant
	rtc    *rtcclient.Client
	noPong atomic.Bool
}

func newMedia(p *Participant) (*media, error) {
	m := &media{p: p}
	ki := p.opts.KeyframeInterval
	if ki < 0 {
		ki = 0 // only the first and on PLI
	}
	rtc, err := rtcclient.New(rtcclient.Config{
		Name: p.opts.Name, Audio: p.opts.Publish, AudioLevel: p.opts.AudioLevel, Video: p.opts.Publish,
		KeyframeInterval: ki, PLIHoldoff: rtcclient.MinKeyframeRequestInterval,
		OnData: p.onData,
		OnDataOpen: func() {
			// Any message tells the focus the channel works; it then sends
			// the current metadata (signalling/README.md, section 5).
			_ = m.sendDC(typePing, struct{}{})
			p.subscribe()
		},
	})
	if err != nil {
		return nil, err
	}
	m.rtc = rtc
	rtc.Start()
	return m, nil
}

// phases fills in the media phases of ph from the client's record.
func (m *media) phases(ph *Phases) {
	ph.ICEConnected, ph.DTLSConnected = m.rtc.Connected()
	for _, t := range m.rtc.Tracks() {
		t.Mu.Lock()
		if !t.FirstPacket.IsZero() && (ph.FirstRTP.IsZero() || t.FirstPacket.Before(ph.FirstRTP)) {
			ph.FirstRTP = t.FirstPacket
		}
		if t.Kind == webrtc.RTPCodecTypeVideo {
			if !t.FirstKeyframe.IsZero() && (ph.FirstVideo.IsZero() || t.FirstKeyframe.Before(ph.FirstVideo)) {
				ph.FirstVideo = t.FirstKeyframe
			}
			ph.VideoBeforeKeyframe += t.BeforeKeyframe
		}
		t.Mu.Unlock()
	}
}

// offer creates the offer with all candidates in it.
func (m *media) offer() (string, error) {
	ctx, cancel := context.WithTimeout(m.p.ctx, 10*time.Second)
	defer cancel()
	return m.rtc.Offer(ctx)
}

func (m *media) setAnswer(sdp string) error { return m.rtc.SetAnswer(sdp) }

// negotiate applies an m.call.negotiate description from the focus and
// answers an offer on the transport it came by.
func (m *media) negotiate(d sessionDescription, viaDC bool) {
	if d.Type == "answer" {
		if err := m.rtc.SetAnswer(d.SDP); err != nil {
			m.p.errorf("negotiate answer: %v", err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(m.p.ctx, 10*time.Second)
	defer cancel()
	ans, err := m.rtc.AnswerOffer(ctx, d.SDP)
	if err != nil {
		m.p.errorf("server offer: %v", err)
		return
	}
	desc := sessionDescription{Type: "answer", SDP: ans}
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

func (m *media) dcOpen() bool { return m.rtc.DataOpen() }

// sendDC sends one MSC3898 data-channel message.
func (m *media) sendDC(typ string, content any) error {
	b, err := json.Marshal(map[string]any{"type": typ, "content": content})
	if err != nil {
		return err
	}
	return m.rtc.SendData(b)
}

func (m *media) offeredTrack(trackID string) bool { return m.rtc.OfferedTrack(trackID) }

func (m *media) close() { m.rtc.Close() }
