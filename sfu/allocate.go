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

	downs := p.downList()
	var video []*downTrack
	for _, d := range downs {
		if d.up.kind == webrtc.RTPCodecTypeAudio {
			if l := d.up.layer(0); l != nil {
				budget -= l.rate.Rate(now)
			}
			d.setTarget(0)
			continue
		}
		video = append(video, d)
	}
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

	type choice struct {
		usable []int // usable layers, lowest first
		rates  []int
		pick   int // index into usable, -1 paused
	}
	choices := make([]choice, len(video))
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
		c.usable, c.rates = d.usableLayers(now)
		if len(c.usable) == 0 {
			continue
		}
		if fits(d, c.usable[0], c.rates[0], budget) {
			c.pick = 0
			budget -= c.rates[0]
		}
	}
	for i, d := range video {
		c := &choices[i]
		for c.pick >= 0 && c.pick+1 < len(c.usable) {
			step := c.rates[c.pick+1] - c.rates[c.pick]
			if !fits(d, c.usable[c.pick+1], step, budget) {
				break
			}
			budget -= step
			c.pick++
		}
	}
	for i, d := range video {
		c := choices[i]
		switch {
		case len(c.usable) == 0:
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

// usableLayers lists the active layers of d's track that fit the
// subscriber's size limit (or the lowest active one if none fits), with
// their bit rates.
func (d *downTrack) usableLayers(now int64) (layers, rates []int) {
	maxW, maxH := int(d.maxWidth.Load()), int(d.maxHeight.Load())
	lowest := -1
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
		if r == 0 && len(layers) > 0 {
			// Not measured yet: start low, upgrade once it is.
			continue
		}
		layers = append(layers, i)
		rates = append(rates, r)
	}
	if len(layers) == 0 && lowest >= 0 {
		layers = []int{lowest}
		rates = []int{d.up.layer(lowest).rate.Rate(now)}
	}
	return layers, rates
}

func (d *downTrack) lowestLayer() int {
	for i := 0; i < maxLayers; i++ {
		if d.up.layer(i) != nil {
			return i
		}
	}
	return 0
}
