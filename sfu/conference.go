package sfu

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/switchboard-chat/switchboard/media"
)

// Conference is a set of participants who may receive each other's tracks.
// It lives while it has participants.
type Conference struct {
	id       string
	sfu      *SFU
	speakers *media.SpeakerDetector
	stop     chan struct{}

	// mu guards the fields below.
	mu           sync.Mutex
	participants map[string]*Participant
	tracks       map[string]*upTrack // by track ID
	closed       bool
	active       []string
	dominant     string
}

func newConference(s *SFU, id string) *Conference {
	c := &Conference{
		id: id, sfu: s, stop: make(chan struct{}),
		speakers:     media.NewSpeakerDetector(media.SpeakerConfig{}),
		participants: make(map[string]*Participant),
		tracks:       make(map[string]*upTrack),
	}
	s.wg.Add(1)
	go c.run()
	return c
}

// ID returns the conference ID.
func (c *Conference) ID() string { return c.id }

// add admits p, enforcing the participant limit.
func (c *Conference) add(p *Participant) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if _, ok := c.participants[p.id]; ok {
		return fmt.Errorf("%w: %q", ErrDuplicateParticipant, p.id)
	}
	if max := c.sfu.cfg.MaxParticipantsPerConference; len(c.participants) >= max {
		return fmt.Errorf("%w (limit %d)", ErrConferenceFull, max)
	}
	c.participants[p.id] = p
	p.conf = c
	return nil
}

// joined subscribes a newly connected participant to the tracks already
// published and tells it what they are.
func (c *Conference) joined(p *Participant) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, up := range c.tracks {
		if up.pub != p && p.wants(up.id) {
			c.subscribeLocked(p, up)
		}
	}
	p.notify(&p.tracksDirty)
}

func (c *Conference) members() []*Participant {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Participant, 0, len(c.participants))
	for _, p := range c.participants {
		out = append(out, p)
	}
	return out
}

// closeIfEmpty marks an empty conference closed and stops its ticker; it
// reports whether it did.
func (c *Conference) closeIfEmpty() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.participants) > 0 || c.closed {
		return false
	}
	c.closed = true
	close(c.stop)
	return true
}

// remove takes p out: its tracks are unpublished and its subscriptions
// dropped.
func (c *Conference) remove(p *Participant) {
	c.mu.Lock()
	if c.participants[p.id] != p {
		c.mu.Unlock()
		return
	}
	delete(c.participants, p.id)
	for id, up := range c.tracks {
		if up.pub == p {
			c.unpublishLocked(id, up)
		}
	}
	for _, d := range p.takeDowns() {
		d.up.removeDown(d)
	}
	c.mu.Unlock()
	c.speakers.Remove(p.id)
	c.sfu.removeIfEmpty(c)
}

// publish makes up available to the others.
func (c *Conference) publish(up *upTrack) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.participants[up.pub.id] != up.pub {
		return ErrClosed
	}
	if _, ok := c.tracks[up.id]; ok {
		return fmt.Errorf("sfu: track ID %q already published in this conference", up.id)
	}
	c.tracks[up.id] = up
	c.sfu.m.tracks.Inc()
	for _, p := range c.participants {
		if p == up.pub {
			continue
		}
		if p.wants(up.id) {
			c.subscribeLocked(p, up)
		}
		p.notify(&p.tracksDirty)
	}
	return nil
}

// unpublish removes up if it is still published.
func (c *Conference) unpublish(up *upTrack) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tracks[up.id] == up {
		c.unpublishLocked(up.id, up)
	}
}

func (c *Conference) unpublishLocked(id string, up *upTrack) {
	delete(c.tracks, id)
	c.sfu.m.tracks.Dec()
	if downs := up.downs.Load(); downs != nil {
		for _, d := range *downs {
			d.sub.removeDown(d)
		}
	}
	up.downs.Store(nil)
	for _, p := range c.participants {
		if p != up.pub {
			p.notify(&p.tracksDirty)
		}
	}
}

// subscribeLocked sends up to p, if it does not receive it already.
func (c *Conference) subscribeLocked(p *Participant, up *upTrack) {
	d, err := p.addDown(up)
	if err != nil || d == nil {
		if err != nil {
			c.sfu.log.Info("subscribe failed", "participant", p.id, "track", up.id, "err", err)
		}
		return
	}
	up.addDown(d)
}

// subscribe and unsubscribe apply one participant's subscription change.
func (c *Conference) subscribe(p *Participant, trackID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if up := c.tracks[trackID]; up != nil && up.pub != p {
		c.subscribeLocked(p, up)
	}
}

func (c *Conference) unsubscribe(p *Participant, trackID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := p.downFor(trackID); d != nil {
		d.up.removeDown(d)
		p.removeDown(d)
	}
}

// trackInfos lists the tracks p can subscribe to, sorted by participant
// and track ID.
func (c *Conference) trackInfos(p *Participant) []TrackInfo {
	c.mu.Lock()
	ups := make([]*upTrack, 0, len(c.tracks))
	for _, up := range c.tracks {
		if up.pub != p {
			ups = append(ups, up)
		}
	}
	c.mu.Unlock()
	out := make([]TrackInfo, 0, len(ups))
	for _, up := range ups {
		out = append(out, up.info())
	}
	slices.SortFunc(out, func(a, b TrackInfo) int {
		if a.ParticipantID != b.ParticipantID {
			if a.ParticipantID < b.ParticipantID {
				return -1
			}
			return 1
		}
		if a.TrackID < b.TrackID {
			return -1
		}
		if a.TrackID > b.TrackID {
			return 1
		}
		return 0
	})
	return out
}

func (c *Conference) speakerState() ([]string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.active), c.dominant
}

// run ticks speaker detection and bandwidth allocation until the
// conference closes.
func (c *Conference) run() {
	defer c.sfu.wg.Done()
	t := time.NewTicker(c.sfu.cfg.AllocationInterval)
	defer t.Stop()
	var ps []*Participant // reused from tick to tick
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		active, dominant, changed := c.speakers.Tick()
		c.mu.Lock()
		clear(ps) // no participant kept alive by the last tick
		ps = ps[:0]
		for _, p := range c.participants {
			ps = append(ps, p)
		}
		if changed {
			c.active, c.dominant = active, dominant
		}
		c.mu.Unlock()
		for _, p := range ps {
			if changed {
				p.notify(&p.speakersDirty)
			}
			p.allocate(dominant, active)
		}
	}
}

// layersChanged tells the others that a track gained a simulcast layer.
func (c *Conference) layersChanged(up *upTrack) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.participants {
		if p != up.pub {
			p.notify(&p.tracksDirty)
		}
	}
}
