package callclient

import (
	"encoding/json"
	"time"

	"github.com/pion/webrtc/v4"
)

type sessionDescription struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

type candidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// focusEvent is the union of the to-device events the focus sends.
type focusEvent struct {
	CallID          string             `json:"call_id"`
	SenderSessionID string             `json:"sender_session_id"`
	Answer          sessionDescription `json:"answer"`
	Description     sessionDescription `json:"description"`
	Candidates      []candidate        `json:"candidates"`
	Metadata        map[string]Stream  `json:"sdp_stream_metadata"`
	Reason          string             `json:"reason"`
}

// syncLoop long-polls /sync and hands the focus's to-device events for
// this call to onToDevice.
func (p *Participant) syncLoop() {
	defer p.wg.Done()
	timeout := int(p.opts.SyncTimeout / time.Millisecond)
	for p.ctx.Err() == nil {
		resp, err := p.cli.SyncRequest(p.ctx, timeout, p.since, "", false, "")
		if err != nil {
			select {
			case <-p.ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		p.since = resp.NextBatch
		for _, ev := range resp.ToDevice.Events {
			if string(ev.Sender) != p.focus.UserID {
				continue
			}
			p.onToDevice(ev.Type.Type, ev.Content.VeryRaw)
		}
	}
}

func (p *Participant) onToDevice(typ string, raw json.RawMessage) {
	var c focusEvent
	if err := json.Unmarshal(raw, &c); err != nil {
		p.errorf("bad %s from the focus: %v", typ, err)
		return
	}
	if c.CallID != p.callID {
		return
	}
	switch typ {
	case typeHangup:
		p.mu.Lock()
		if p.hangupReason == "" {
			p.hangupReason = c.Reason
			if p.hangupReason == "" {
				p.hangupReason = "(no reason)"
			}
		}
		p.mu.Unlock()
		p.hupOnce.Do(func() { close(p.hungUp) })
	case typeAnswer:
		now := time.Now()
		p.mu.Lock()
		p.focusSession = c.SenderSessionID
		if p.phases.Answered.IsZero() {
			p.phases.Answered = now
		}
		p.mu.Unlock()
		if err := p.media.setAnswer(c.Answer.SDP); err != nil {
			p.errorf("answer: %v", err)
			return
		}
		p.ansOnce.Do(func() { close(p.answered) })
	case typeCandidates:
		for _, ca := range c.Candidates {
			if ca.Candidate == "" {
				continue
			}
			if err := p.media.rtc.AddCandidate(webrtc.ICECandidateInit{Candidate: ca.Candidate,
				SDPMid: ca.SDPMid, SDPMLineIndex: ca.SDPMLineIndex}); err != nil {
				p.errorf("candidate: %v", err)
			}
		}
	case typeNegotiate:
		p.setMeta(c.Metadata)
		p.media.negotiate(c.Description, false)
	case typeMetadata:
		p.setMeta(c.Metadata)
	}
}

// setMeta records the focus's stream metadata and subscribes to the new
// tracks of the publishers the options name.
func (p *Participant) setMeta(m map[string]Stream) {
	if m == nil {
		return
	}
	p.mu.Lock()
	p.meta = m
	p.mu.Unlock()
	p.subscribe()
}

type trackRef struct {
	StreamID string `json:"stream_id"`
	TrackID  string `json:"track_id"`
	Width    int    `json:"width,omitempty"`
	Height   int    `json:"height,omitempty"`
}

// subscribe sends m.call.track_subscription for the wanted tracks of the
// metadata not subscribed yet (on the data channel, once it is open).
func (p *Participant) subscribe() {
	if p.opts.SubscribeTo == nil || !p.media.dcOpen() {
		return
	}
	p.mu.Lock()
	var subs []trackRef
	live := map[string]bool{}
	for sid, s := range p.meta {
		if !p.opts.SubscribeTo(s.UserID) {
			continue
		}
		for tid, tr := range s.Tracks {
			live[tid] = true
			if p.subscribed[tid] {
				continue
			}
			p.subscribed[tid] = true
			r := trackRef{StreamID: sid, TrackID: tid}
			if tr.Kind == "video" {
				r.Width, r.Height = 640, 360
			}
			subs = append(subs, r)
		}
	}
	for tid := range p.subscribed {
		if !live[tid] {
			delete(p.subscribed, tid) // gone; subscribe again if it returns
		}
	}
	p.mu.Unlock()
	if len(subs) == 0 {
		return
	}
	if err := p.media.sendDC(typeSubscription, map[string]any{"subscribe": subs}); err != nil {
		p.errorf("track subscription: %v", err)
	}
}

// onData handles a data-channel message from the focus.
func (p *Participant) onData(b []byte) {
	var m struct {
		Type    string          `json:"type"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		p.errorf("bad data-channel message %q: %v", b, err)
		return
	}
	p.mu.Lock()
	p.dcCounts[m.Type]++
	p.mu.Unlock()
	switch m.Type {
	case typePing:
		if !p.media.noPong.Load() {
			_ = p.media.sendDC(typePong, struct{}{})
		}
	case typeNegotiate:
		var c struct {
			Description sessionDescription `json:"description"`
			Metadata    map[string]Stream  `json:"sdp_stream_metadata"`
		}
		if err := json.Unmarshal(m.Content, &c); err != nil {
			p.errorf("bad negotiate: %v", err)
			return
		}
		p.setMeta(c.Metadata)
		p.media.negotiate(c.Description, true)
	case typeMetadata:
		var c struct {
			Metadata map[string]Stream `json:"sdp_stream_metadata"`
		}
		if err := json.Unmarshal(m.Content, &c); err != nil {
			p.errorf("bad metadata: %v", err)
			return
		}
		p.setMeta(c.Metadata)
	case typeSpeakers:
		var s Speakers
		if err := json.Unmarshal(m.Content, &s); err != nil {
			p.errorf("bad speakers: %v", err)
			return
		}
		p.mu.Lock()
		p.speakers = s
		p.mu.Unlock()
	}
}
