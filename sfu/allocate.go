package sfu

import (
	"slices"

	"github.com/pion/webrtc/v4"
)

// layerActiveWindow is how recently a layer must have carried a packet to
// be chosen (a publisher may stop sending a layer, RFC 8853 section 5.3).
const layerActiveWindow = int64(2e9)

// upgradeHeadroom is the margin, in percent of the cost, that moving to a
// higher layer (or resuming) needs on top of the cost.
const upgradeHeadroom = 15

// allocate shares p's bandwidth (its estimate, capped by SetMaxBitrate)
// among the tracks p receives: audio first and always; then each video
// track, in priority order (the dominant speaker, then other active
// speakers, then the rest), gets its lowest usable layer if it fits, else
// is paused; what is left upgrades tracks in the same order. A layer is
// usable if it is active and fits the subscriber's requested size. Moving
// up needs 15% headroom; staying does not.
func (p *Participant) allocate(dominant string, active []string) {
	if p.closed() {
		return
	}
	now := p.sfu.now()
	p.bwe.Update(now)
	budget := p.bwe.Estimate()
	p.sfu.m.bandwidth.Observe(float64(budget))
	p.mu.Lock()
	if p.maxBitrate > 0 {
		budget = min(budget, p.maxBitrate)
	}
	p.mu.Unlock()

	sc := &p.alloc
	sc.downs = p.appendDowns(sc.downs[:0])
	video := sc.video[:0]
	for _, d := range sc.downs {
		if d.up.kind == webrtc.RTPCodecTypeAudio {
			if l := d.up.layer(0); l != nil {
				budget -= l.rate.Rate(now)
			}
			d.setTarget(0)
			continue
		}
		video = append(video, d)
	}
	sc.video = video
	rank := func(d *downTrack) int {
		switch {
		case d.up.pub.id == dominant:
			return 0
		case slices.Contains(active, d.up.pub.id):
			return 1
		}
		return 2
	}
	slices.SortStableFunc(video, func(a, b *downTrack) int { return rank(a) - rank(b) })

	if cap(sc.choices) < len(video) {
		sc.choices = make([]layerChoice, len(video))
	}
	choices := sc.choices[:len(video)]
	// Going above the layer being sent needs upgradeHeadroom more than
	// the step costs, so that a budget close to a layer's rate does not
	// switch back and forth (each switch costs a key frame).
	fits := func(d *downTrack, layer, cost, budget int) bool {
		if layer > int(d.current.Load()) {
			cost += cost * upgradeHeadroom / 100
		}
		return cost <= budget
	}
	for i, d := range video {
		c := &choices[i]
		c.pick = -1
		c.n = d.usableLayers(now, &c.usable, &c.rates)
		if c.n == 0 {
			continue
		}
		if fits(d, c.usable[0], c.rates[0], budget) {
			c.pick = 0
			budget -= c.rates[0]
		}
	}
	for i, d := range video {
		c := &choices[i]
		for c.pick >= 0 && c.pick+1 < c.n {
			step := c.rates[c.pick+1] - c.rates[c.pick]
			if !fits(d, c.usable[c.pick+1], step, budget) {
				break
			}
			budget -= step
			c.pick++
		}
	}
	for i, d := range video {
		c := &choices[i]
		switch {
		case c.n == 0:
			// Nothing received yet: wait on the lowest layer that exists.
			d.setTarget(d.lowestLayer())
		case c.pick < 0:
			d.setTarget(-1)
		default:
			d.setTarget(c.usable[c.pick])
		}
		d.refreshWant()
	}
}

// layerChoice is the allocator's working state for one video track.
type layerChoice struct {
	usable, rates [maxLayers]int // usable layers, lowest first, and their rates
	n             int            // entries in usable and rates
	pick          int            // index into usable, -1 paused
}

// allocScratch is allocate's reused working space (the conference's
// ticker goroutine only), so that an allocation round allocates nothing.
type allocScratch struct {
	downs, video []*downTrack
	choices      []layerChoice
}

// usableLayers lists in layers the active layers of d's track that fit
// the subscriber's size limit (or the lowest active one if none fits),
// with their bit rates in rates, and returns how many there are.
func (d *downTrack) usableLayers(now int64, layers, rates *[maxLayers]int) int {
	maxW, maxH := int(d.maxWidth.Load()), int(d.maxHeight.Load())
	lowest, n := -1, 0
	for i := 0; i < maxLayers; i++ {
		l := d.up.layer(i)
		if l == nil || now-l.lastPacket.Load() > layerActiveWindow {
			continue
		}
		if lowest < 0 {
			lowest = i
		}
		w, h := int(l.width.Load()), int(l.height.Load())
		if (maxW > 0 && w > maxW) || (maxH > 0 && h > maxH) {
			continue
		}
		r := l.rate.Rate(now)
		if r == 0 && n > 0 {
			// Not measured yet: start low, upgrade once it is.
			continue
		}
		layers[n], rates[n] = i, r
		n++
	}
	if n == 0 && lowest >= 0 {
		layers[0], rates[0] = lowest, d.up.layer(lowest).rate.Rate(now)
		n = 1
	}
	return n
}

func (d *downTrack) lowestLayer() int {
	for i := 0; i < maxLayers; i++ {
		if d.up.layer(i) != nil {
			return i
		}
	}
	return 0
}
