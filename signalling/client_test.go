package signalling

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/internal/testkit/rtcclient"
)

// This file is the test participant: a mautrix client that joins the
// room and publishes its call membership, and the test kit's WebRTC client
// (rtcclient), which sends synthetic Opus and VP8 and records what it
// receives, signalling with the focus over to-device messages and the data
// channel like a MSC3898 client.

type participant struct {
	t       testing.TB
	e       *env
	name    string
	cli     *mautrix.Client
	room    id.RoomID
	conf    string
	session string
	callID  string
	rtc     *rtcclient.Client      // nil with noMedia
	pc      *webrtc.PeerConnection // rtc's
	level   uint8                  // audio level sent (RFC 6464; 127 is silence)
	noPong  atomic.Bool
	hungUp  atomic.Bool // the focus may close the connection any time now
	seq     atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc
	stop   chan struct{}
	wg     sync.WaitGroup

	mu           sync.Mutex
	since        string
	focusSession string
	answered     bool
	meta         map[string]outStream
	speakers     speakersBody
	hangups      []hangupContent
	pings        int
	dcMsgs       map[string]int
}

type speakersBody struct {
	Active   []speakerRef `json:"active"`
	Dominant *speakerRef  `json:"dominant"`
}

type partOpts struct {
	noMember     bool   // publish no m.call.member
	noJoin       bool   // do not join the room
	noMedia      bool   // no PeerConnection
	memberDevice string // device named in m.call.member (default: own)
	expiresIn    time.Duration
	level        uint8
}

func (e *env) participant(t testing.TB, name string, room id.RoomID, conf string, o partOpts) *participant {
	t.Helper()
	cli := e.user(t, name)
	ctx, cancel := context.WithCancel(context.Background())
	p := &participant{t: t, e: e, name: name, cli: cli, room: room, conf: conf, session: "sess-" + name,
		callID: "call-" + name, level: o.level, ctx: ctx, cancel: cancel, stop: make(chan struct{}),
		meta: map[string]outStream{}, dcMsgs: map[string]int{}}
	if o.level == 0 {
		p.level = 127
	}
	t.Cleanup(p.close)
	if !o.noJoin {
		if _, err := cli.JoinRoomByID(ctx, room); err != nil {
			t.Fatalf("%s join: %v", name, err)
		}
	}
	if !o.noMember {
		dev := o.memberDevice
		if dev == "" {
			dev = string(cli.DeviceID)
		}
		exp := o.expiresIn
		if exp == 0 {
			exp = time.Hour
		}
		p.publishMember(dev, time.Now().Add(exp))
	}
	resp, err := cli.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	p.since = resp.NextBatch
	p.wg.Add(1)
	go p.syncLoop()
	if !o.noMedia {
		p.setupMedia()
	}
	return p
}

// publishMember publishes (or replaces) the MSC3401 call membership.
func (p *participant) publishMember(device string, expires time.Time) {
	p.t.Helper()
	content := map[string]any{"m.calls": []any{map[string]any{
		"m.call_id": p.conf,
		"m.devices": []any{map[string]any{
			"device_id": device, "session_id": p.session, "expires_ts": expires.UnixMilli(),
			"feeds":         []any{map[string]any{"purpose": "m.usermedia", "id": p.name + "-stream"}},
			"m.foci.active": []any{map[string]any{"user_id": p.e.focus.UserID(), "device_id": p.e.focus.DeviceID()}},
		}},
	}}}
	if _, err := p.cli.SendStateEvent(context.Background(), p.room, evCallMember, string(p.cli.UserID), content); err != nil {
		p.t.Fatalf("%s m.call.member: %v", p.name, err)
	}
}

// setupMedia creates the test kit's WebRTC client: a data channel, one
// audio and one video track (a key frame every half second and on each
// PLI), sending at once.
func (p *participant) setupMedia() {
	rtc, err := rtcclient.New(rtcclient.Config{Name: p.name, Audio: true, AudioLevel: p.level, Video: true,
		KeyframeInterval: 500 * time.Millisecond, OnData: p.onData})
	if err != nil {
		p.t.Fatal(err)
	}
	p.rtc, p.pc = rtc, rtc.PC()
	rtc.Start()
}

// offer creates the client's offer with all candidates in it.
func (p *participant) offer() string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, testTimeout)
	defer cancel()
	sdp, err := p.rtc.Offer(ctx)
	if err != nil {
		p.t.Fatal(err)
	}
	return sdp
}

// inviteContent is the MSC3401/MSC3898 to-device invite to the focus.
func (p *participant) inviteContent(sdp string) map[string]any {
	return map[string]any{
		"version": "1", "call_id": p.callID, "party_id": "party-" + p.name, "conf_id": p.conf,
		"room_id": string(p.room), "device_id": string(p.cli.DeviceID), "sender_session_id": p.session,
		"dest_session_id": "", "seq": p.seq.Add(1) - 1, "lifetime": 30000,
		"offer": map[string]any{"type": "offer", "sdp": sdp},
		"sdp_stream_metadata": map[string]any{p.name + "-stream": map[string]any{
			"purpose": "m.usermedia", "audio_muted": false, "video_muted": false}},
	}
}

// invite offers to the focus.
func (p *participant) invite() { p.send(TypeInvite, p.inviteContent(p.offer())) }

// send sends a to-device message to the focus.
func (p *participant) send(typ string, content map[string]any) {
	p.t.Helper()
	_, err := p.cli.SendToDevice(context.Background(), event.Type{Type: typ, Class: event.ToDeviceEventType},
		&mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
			id.UserID(p.e.focus.UserID()): {id.DeviceID(p.e.focus.DeviceID()): {Raw: content}},
		}})
	if err != nil {
		p.t.Fatalf("%s send %s: %v", p.name, typ, err)
	}
}

// callFields are the fields of to-device call events after the invite.
func (p *participant) callFields() map[string]any {
	p.mu.Lock()
	fs := p.focusSession
	p.mu.Unlock()
	return map[string]any{"version": "1", "call_id": p.callID, "party_id": "party-" + p.name, "conf_id": p.conf,
		"device_id": string(p.cli.DeviceID), "sender_session_id": p.session, "dest_session_id": fs,
		"seq": p.seq.Add(1) - 1}
}

// hangup sends m.call.hangup and closes the connection.
func (p *participant) hangup() {
	p.hungUp.Store(true)
	c := p.callFields()
	c["reason"] = "user_hangup"
	p.send(TypeHangup, c)
}

func (p *participant) syncLoop() {
	defer p.wg.Done()
	for p.ctx.Err() == nil {
		resp, err := p.cli.SyncRequest(p.ctx, 500, p.since, "", false, "")
		if err != nil {
			select {
			case <-p.ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		p.since = resp.NextBatch
		for _, ev := range resp.ToDevice.Events {
			if string(ev.Sender) != p.e.focus.UserID() {
				continue
			}
			p.onToDevice(ev.Type.Type, ev.Content.VeryRaw)
		}
	}
}

func (p *participant) onToDevice(typ string, raw json.RawMessage) {
	var c struct {
		CallID          string               `json:"call_id"`
		SenderSessionID string               `json:"sender_session_id"`
		Answer          sessionDescription   `json:"answer"`
		Description     sessionDescription   `json:"description"`
		Candidates      []candidate          `json:"candidates"`
		Metadata        map[string]outStream `json:"sdp_stream_metadata"`
		Reason          string               `json:"reason"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		p.errorf("%s: bad %s from focus: %v", p.name, typ, err)
		return
	}
	switch typ {
	case TypeHangup:
		p.mu.Lock()
		p.hangups = append(p.hangups, hangupContent{callHeader: callHeader{CallID: c.CallID}, Reason: c.Reason})
		p.mu.Unlock()
		return
	}
	if c.CallID != p.callID || p.pc == nil {
		return
	}
	switch typ {
	case TypeAnswer:
		p.mu.Lock()
		p.focusSession = c.SenderSessionID
		p.mu.Unlock()
		if err := p.rtc.SetAnswer(c.Answer.SDP); err != nil {
			p.errorf("%s: answer: %v", p.name, err)
			return
		}
		p.mu.Lock()
		p.answered = true
		p.mu.Unlock()
	case TypeCandidates:
		for _, ca := range c.Candidates {
			if ca.Candidate == "" {
				continue
			}
			if err := p.rtc.AddCandidate(webrtc.ICECandidateInit{Candidate: ca.Candidate, SDPMid: ca.SDPMid,
				SDPMLineIndex: ca.SDPMLineIndex}); err != nil {
				p.errorf("%s: candidate: %v", p.name, err)
			}
		}
	case TypeNegotiate:
		p.setMeta(c.Metadata)
		if c.Description.Type == "offer" {
			p.applyOffer(c.Description.SDP, false)
		} else if err := p.rtc.SetAnswer(c.Description.SDP); err != nil {
			p.errorf("%s: negotiate answer: %v", p.name, err)
		}
	case TypeMetadataChanged:
		p.setMeta(c.Metadata)
	}
}

func (p *participant) setMeta(m map[string]outStream) {
	if m == nil {
		return
	}
	p.mu.Lock()
	p.meta = m
	p.mu.Unlock()
}

// applyOffer answers a server offer on the transport it came by.
func (p *participant) applyOffer(sdp string, viaDC bool) {
	// The answer to our own offer may still be on its way (it travels by
	// /sync, the offer perhaps by the data channel): AnswerOffer waits.
	ctx, cancel := context.WithTimeout(p.ctx, testTimeout)
	defer cancel()
	ans, err := p.rtc.AnswerOffer(ctx, sdp)
	if err != nil {
		p.errorf("%s: %v", p.name, err)
		return
	}
	desc := map[string]any{"type": "answer", "sdp": ans}
	if viaDC {
		p.sendDC(TypeNegotiate, map[string]any{"description": desc})
		return
	}
	c := p.callFields()
	c["description"] = desc
	select {
	case <-p.stop:
	default:
		p.send(TypeNegotiate, c)
	}
}

func (p *participant) sendDC(typ string, content any) {
	b, _ := json.Marshal(map[string]any{"type": typ, "content": content})
	if err := p.rtc.SendData(b); err != nil {
		p.errorf("%s: data channel send: %v", p.name, err)
	}
}

func (p *participant) onData(b []byte) {
	var m struct {
		Type    string          `json:"type"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		p.errorf("%s: bad data-channel message %q: %v", p.name, b, err)
		return
	}
	p.mu.Lock()
	p.dcMsgs[m.Type]++
	p.mu.Unlock()
	switch m.Type {
	case TypePing:
		p.mu.Lock()
		p.pings++
		p.mu.Unlock()
		if !p.noPong.Load() {
			p.sendDC(TypePong, struct{}{})
		}
	case TypeNegotiate:
		var c struct {
			Description sessionDescription   `json:"description"`
			Metadata    map[string]outStream `json:"sdp_stream_metadata"`
		}
		_ = json.Unmarshal(m.Content, &c)
		p.setMeta(c.Metadata)
		if c.Description.Type == "offer" {
			p.applyOffer(c.Description.SDP, true)
		} else if err := p.rtc.SetAnswer(c.Description.SDP); err != nil {
			p.errorf("%s: negotiate answer: %v", p.name, err)
		}
	case TypeMetadataChanged:
		var c struct {
			Metadata map[string]outStream `json:"sdp_stream_metadata"`
		}
		_ = json.Unmarshal(m.Content, &c)
		p.setMeta(c.Metadata)
	case TypeSpeakers:
		var s speakersBody
		_ = json.Unmarshal(m.Content, &s)
		p.mu.Lock()
		p.speakers = s
		p.mu.Unlock()
	}
}

// received reports how many packets arrived on track trackID.
func (p *participant) received(trackID string) int64 {
	if p.rtc == nil {
		return 0 // no media
	}
	if t := p.rtc.Track(trackID); t != nil {
		return t.Packets.Load()
	}
	return 0
}

// receivesFrom reports whether audio and video of each of others flow.
func (p *participant) receivesFrom(others ...*participant) bool {
	for _, o := range others {
		if p.received(o.name+"-audio") < 10 || p.received(o.name+"-video") < 10 {
			return false
		}
	}
	return true
}

// offeredTrack reports whether the current remote SDP sends trackID.
func (p *participant) offeredTrack(trackID string) bool { return p.rtc.OfferedTrack(trackID) }

func (p *participant) metaStream(streamID string) (outStream, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.meta[streamID]
	return s, ok
}

func (p *participant) hangupReason(callID string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.hangups {
		if h.CallID == callID {
			return h.Reason, true
		}
	}
	return "", false
}

func (p *participant) isAnswered() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.answered
}

func (p *participant) errorf(format string, args ...any) {
	if p.hungUp.Load() {
		return
	}
	select {
	case <-p.stop:
	default:
		p.t.Errorf(format, args...)
	}
}

func (p *participant) close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	p.cancel()
	if p.rtc != nil {
		p.rtc.Close()
	}
	p.wg.Wait()
}

func (p *participant) String() string { return fmt.Sprintf("participant %s", p.name) }
