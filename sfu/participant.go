package sfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard-chat/switchboard/media"
)

// Handler receives a participant's events. Every field may be nil. The
// callbacks run on SFU goroutines with no SFU lock held and must not block
// for long; they may call the Participant's methods.
type Handler struct {
	// OnICECandidate trickles a server candidate to the client.
	OnICECandidate func(webrtc.ICECandidateInit)
	// OnOffer carries a server-initiated renegotiation offer (tracks to
	// receive were added or removed); answer with Participant.HandleAnswer.
	OnOffer func(sdp string)
	// OnTracks gives the full list of tracks the participant can receive,
	// each time it changes.
	OnTracks func([]TrackInfo)
	// OnSpeakers gives the participant IDs currently speaking (sorted) and
	// the dominant speaker, each time either changes.
	OnSpeakers func(active []string, dominant string)
	// OnDataMessage carries a message the client sent on its data channel.
	OnDataMessage func([]byte)
	// OnOfferNeeded, when set, makes the client the only offerer (as
	// LiveKit's single-PeerConnection mode): instead of sending OnOffer,
	// the SFU asks the client to offer again, with at least audio and
	// video more receive-only m-lines for tracks waiting for one
	// (clientoffers.go).
	OnOfferNeeded func(audio, video int)
	// OnClose is called once when the participant is gone: reason is
	// ErrLeft after Close, ErrICEFailed, ErrPeerClosed, ErrClosed when the
	// SFU closes, or the error that ended it.
	OnClose func(reason error)
}

// Subscription asks for one published track, by track ID, with an optional
// size limit: the simulcast layer sent is the largest that fits (0: no
// limit).
type Subscription struct {
	TrackID             string
	MaxWidth, MaxHeight int
}

// Participant is one client in a conference, with one PeerConnection that
// carries what it publishes and what it receives.
type Participant struct {
	id   string
	sfu  *SFU
	conf *Conference
	h    Handler
	pc   *webrtc.PeerConnection
	log  *slog.Logger
	bwe  *media.BandwidthEstimator
	rxq  *rxQuality

	queue chan sendItem
	kick  chan struct{}
	done  chan struct{}
	// wg tracks the goroutines that read and write media for p.
	wg        sync.WaitGroup
	closeOnce sync.Once

	connected     atomic.Bool
	started       atomic.Bool // the client's first offer is applied
	tracksDirty   atomic.Bool
	speakersDirty atomic.Bool
	negotiateDue  atomic.Bool

	// negMu serialises offer/answer exchanges; pendingOffer is set when a
	// server offer is owed to the client (written under negMu, read
	// without it when the connection comes up).
	negMu        sync.Mutex
	pendingOffer atomic.Bool

	// mu guards the fields below.
	mu         sync.Mutex
	published  map[string]*upTrack
	downs      map[string]*downTrack   // by publisher track ID
	wanted     map[string]Subscription // explicit subscriptions
	unwanted   map[string]bool         // explicit unsubscriptions (AutoSubscribe)
	maxBitrate int
	dc         *webrtc.DataChannel

	// alloc is allocate's working space (the conference ticker only).
	alloc allocScratch
}

func newParticipant(s *SFU, id string, h Handler) (*Participant, error) {
	rxq := &rxQuality{}
	api, err := s.newAPI(rxq)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{SDPSemantics: webrtc.SDPSemanticsUnifiedPlan})
	if err != nil {
		return nil, err
	}
	p := &Participant{
		id: id, sfu: s, h: h, pc: pc, rxq: rxq,
		log: s.log.With("participant", id),
		bwe: media.NewBandwidthEstimator(media.EstimatorConfig{
			Initial: s.cfg.InitialBitrate, Min: s.cfg.MinBitrate, Max: s.cfg.MaxBitrate}),
		queue:     make(chan sendItem, s.cfg.SendQueueSize),
		kick:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		published: make(map[string]*upTrack),
		downs:     make(map[string]*downTrack),
		wanted:    make(map[string]Subscription),
		unwanted:  make(map[string]bool),
	}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil && p.h.OnICECandidate != nil {
			p.h.OnICECandidate(c.ToJSON())
		}
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			p.connected.Store(true)
			// An offer owed while connecting goes out now; with none
			// owed there is nothing to renegotiate (an offer that
			// changes nothing would only hold up the next one).
			if p.pendingOffer.Load() {
				p.notify(&p.negotiateDue)
			}
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			if p.closed() {
				return // our own Close
			}
			reason := ErrICEFailed
			if st == webrtc.PeerConnectionStateClosed {
				reason = ErrPeerClosed
			}
			p.log.Info("connection lost, removing participant", "state", st.String())
			if !s.goTracked(func() { p.closeWith(reason) }) {
				return // the SFU is closing and closes p itself
			}
		}
	})
	pc.OnTrack(p.onTrack)
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		p.mu.Lock()
		if p.dc == nil {
			p.dc = dc
		}
		p.mu.Unlock()
		dc.OnMessage(func(msg webrtc.DataChannelMessage) {
			if p.h.OnDataMessage != nil {
				p.h.OnDataMessage(msg.Data)
			}
		})
	})
	return p, nil
}

// ID returns the participant ID.
func (p *Participant) ID() string { return p.id }

// Conference returns the conference p is in.
func (p *Participant) Conference() *Conference { return p.conf }

// start runs the send loop and the event worker.
func (p *Participant) start() {
	p.started.Store(true)
	// No lock across the two: p.mu is taken under the conference's lock,
	// which is taken under the SFU's.
	if p.goTracked(p.sendLoop) {
		p.sfu.goTracked(p.worker)
	}
}

// goTracked runs f on a goroutine that closeWith waits for, unless p is
// closed already. done is closed under mu, so no goroutine is added once
// closeWith waits.
func (p *Participant) goTracked(f func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.goTrackedLocked(f)
}

func (p *Participant) goTrackedLocked(f func()) bool {
	if p.closed() {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

// notify sets a flag for the worker and wakes it.
func (p *Participant) notify(flag *atomic.Bool) {
	flag.Store(true)
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// worker delivers events to the handler and runs server renegotiation, in
// that order, so that a client learns about tracks before it receives them.
func (p *Participant) worker() {
	for {
		select {
		case <-p.done:
			return
		case <-p.kick:
		}
		if p.tracksDirty.Swap(false) && p.h.OnTracks != nil {
			p.h.OnTracks(p.conf.trackInfos(p))
		}
		if p.speakersDirty.Swap(false) && p.h.OnSpeakers != nil {
			active, dominant := p.conf.speakerState()
			p.h.OnSpeakers(active, dominant)
		}
		if p.negotiateDue.Swap(false) {
			p.negotiate()
		}
	}
}

func (p *Participant) closed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// answer applies a client offer and returns the answer with the server's
// candidates in it. negMu must not be held.
func (p *Participant) answer(ctx context.Context, offer string) (string, error) {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.closed() {
		return "", ErrClosed
	}
	if p.pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
		// Glare: the SFU is the impolite peer (pion cannot roll back a
		// local offer); the client answers our offer, then offers again.
		return "", ErrGlare
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidSDP, err)
	}
	ans, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidSDP, err)
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(ans); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidSDP, err)
	}
	p.startDowns()
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if p.pendingOffer.Load() {
		p.notify(&p.negotiateDue)
	}
	return p.pc.LocalDescription().SDP, nil
}

// HandleOffer applies a client-initiated renegotiation (tracks added or
// removed, ICE restart) and returns the answer. If a server offer (OnOffer)
// is still unanswered it returns ErrGlare and changes nothing: in perfect
// negotiation terms the SFU is impolite, so the client rolls back, answers
// the server offer with HandleAnswer, and offers again. After HandleOffer
// returns, an OnOffer that was waiting may follow at once; the signalling
// layer must deliver the answer to the client before that offer.
func (p *Participant) HandleOffer(ctx context.Context, sdp string) (string, error) {
	return p.answer(ctx, sdp)
}

// HandleAnswer applies the client's answer to the last OnOffer.
func (p *Participant) HandleAnswer(sdp string) error {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.closed() {
		return ErrClosed
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSDP, err)
	}
	p.startDowns()
	if p.pendingOffer.Load() {
		p.notify(&p.negotiateDue)
	}
	return nil
}

// startDowns starts forwarding on the down tracks the description just
// applied bound (pion starts their senders while applying it).
func (p *Participant) startDowns() {
	for _, d := range p.downList() {
		d.start()
	}
}

// negotiate sends the client a server offer if one is owed and the
// signalling state allows it; otherwise it leaves the offer pending.
func (p *Participant) negotiate() {
	if p.h.OnOfferNeeded != nil {
		p.askClientOffer()
		return
	}
	p.negMu.Lock()
	if p.closed() {
		p.negMu.Unlock()
		return
	}
	connecting := !p.connected.Load()
	if connecting || p.pc.SignalingState() != webrtc.SignalingStateStable {
		p.pendingOffer.Store(true)
		p.negMu.Unlock()
		if connecting && p.connected.Load() {
			// Connected meanwhile: the connection handler may have
			// looked for a pending offer before this one was noted.
			p.notify(&p.negotiateDue)
		}
		return
	}
	p.pendingOffer.Store(false)
	offer, err := p.pc.CreateOffer(nil)
	if err == nil {
		err = p.pc.SetLocalDescription(offer)
	}
	if err != nil {
		p.negMu.Unlock()
		p.log.Warn("server offer failed", "err", err)
		return
	}
	sdp := p.pc.LocalDescription().SDP
	p.negMu.Unlock()
	if p.h.OnOffer != nil {
		p.h.OnOffer(sdp)
	}
}

// PendingOffer returns the server offer the client has not answered yet,
// if any, so that a signalling layer that lost it can send it again (pion
// cannot withdraw an offer, so until it is answered the client's own
// offers get ErrGlare).
func (p *Participant) PendingOffer() (string, bool) {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return "", false
	}
	ld := p.pc.PendingLocalDescription()
	if ld == nil {
		return "", false
	}
	return ld.SDP, true
}

// AddICECandidate adds a candidate trickled by the client.
func (p *Participant) AddICECandidate(c webrtc.ICECandidateInit) error {
	if p.closed() {
		return ErrClosed
	}
	return p.pc.AddICECandidate(c)
}

// SendData sends a message on the client's data channel, as a text
// message (WebRTC data channel PPID "string"): the signalling messages
// carried there are JSON, which browsers then receive as strings.
func (p *Participant) SendData(b []byte) error {
	p.mu.Lock()
	dc := p.dc
	p.mu.Unlock()
	if dc == nil || dc.ReadyState() != webrtc.DataChannelStateOpen {
		return ErrNoDataChannel
	}
	return dc.SendText(string(b))
}

// UpdateSubscriptions subscribes to (or changes the size limit of) the
// given tracks and unsubscribes from others, as the MSC3401
// m.call.track_subscription message asks. A subscription to a track not
// published yet takes effect when it is. With Config.AutoSubscribe every
// track is received unless unsubscribed.
func (p *Participant) UpdateSubscriptions(subscribe []Subscription, unsubscribe []string) error {
	if p.closed() {
		return ErrClosed
	}
	p.mu.Lock()
	for _, s := range subscribe {
		p.wanted[s.TrackID] = s
		delete(p.unwanted, s.TrackID)
	}
	for _, id := range unsubscribe {
		delete(p.wanted, id)
		p.unwanted[id] = true
	}
	p.mu.Unlock()
	for _, id := range unsubscribe {
		p.conf.unsubscribe(p, id)
	}
	for _, s := range subscribe {
		p.conf.subscribe(p, s.TrackID)
		if d := p.downFor(s.TrackID); d != nil {
			d.maxWidth.Store(int32(max(s.MaxWidth, 0)))
			d.maxHeight.Store(int32(max(s.MaxHeight, 0)))
		}
	}
	return nil
}

// SetMaxBitrate caps the bandwidth the SFU sends p, bits/s, on top of
// its own estimate (0 removes the cap), for clients that announce a limit.
func (p *Participant) SetMaxBitrate(bps int) {
	p.mu.Lock()
	p.maxBitrate = max(bps, 0)
	p.mu.Unlock()
}

// EstimatedBitrate returns the current bandwidth estimate towards p.
func (p *Participant) EstimatedBitrate() int { return p.bwe.Estimate() }

// Close removes p from its conference and releases everything it holds.
func (p *Participant) Close() error {
	p.closeWith(ErrLeft)
	return nil
}

// closeWith tears p down once: unpublish and unsubscribe, close the
// PeerConnection, wait for p's media goroutines, then tell the handler.
func (p *Participant) closeWith(reason error) {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		close(p.done)
		p.mu.Unlock()
		if p.conf != nil {
			p.conf.remove(p)
		}
		if err := p.pc.Close(); err != nil && !errors.Is(err, webrtc.ErrConnectionClosed) {
			p.log.Debug("closing peer connection", "err", err)
		}
		p.wg.Wait()
		p.sfu.m.participants.Dec()
		p.log.Info("participant left", "reason", reason)
		if p.h.OnClose != nil {
			p.h.OnClose(reason)
		}
	})
}
