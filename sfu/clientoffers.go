package sfu

import "github.com/pion/webrtc/v4"

// Client-offered negotiation (Handler.OnOfferNeeded). Some clients never
// answer a server offer: LiveKit's single-PeerConnection mode has the
// client add receive-only transceivers when the server asks for media
// sections, and offer. pion then binds a down track that has no m-line
// yet (a transceiver AddTrack made, with no mid) to one of the client's
// new receive-only m-lines and answers it sendonly.

// askClientOffer asks the client to offer, saying how many more m-lines
// of each kind the waiting down tracks need.
func (p *Participant) askClientOffer() {
	p.negMu.Lock()
	if p.closed() {
		p.negMu.Unlock()
		return
	}
	p.pendingOffer.Store(false)
	audio, video := 0, 0
	for _, t := range p.pc.GetTransceivers() {
		if t.Mid() != "" || t.Sender() == nil || t.Sender().Track() == nil {
			continue
		}
		if t.Kind() == webrtc.RTPCodecTypeAudio {
			audio++
		} else {
			video++
		}
	}
	p.negMu.Unlock()
	p.h.OnOfferNeeded(audio, video)
}

// SendBinary sends a binary message on the client's data channel (WebRTC
// data channel PPID "binary"), for protocols whose data messages are not
// text, such as LiveKit's protobuf DataPacket.
func (p *Participant) SendBinary(b []byte) error {
	p.mu.Lock()
	dc := p.dc
	p.mu.Unlock()
	if dc == nil || dc.ReadyState() != webrtc.DataChannelStateOpen {
		return ErrNoDataChannel
	}
	return dc.Send(b)
}

// addSendonly adds d on a new sendonly transceiver.
func (p *Participant) addSendonly(d *downTrack) (*webrtc.RTPSender, error) {
	tr, err := p.pc.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, err
	}
	return tr.Sender(), nil
}
