package media

import (
	"slices"
	"sync"
)

// LevelMeter accumulates the RFC 6464 audio levels of one audio stream
// between two ticks of a SpeakerDetector. Observe is called per packet from
// the stream's receive goroutine; it is safe for concurrent use and does not
// allocate.
type LevelMeter struct {
	mu  sync.Mutex
	sum float64
	n   int
}

// Observe records one packet's level in -dBov (0 loudest, 127 silence).
func (l *LevelMeter) Observe(level uint8) {
	if level > 127 {
		level = 127
	}
	l.mu.Lock()
	l.sum += float64(127 - level)
	l.n++
	l.mu.Unlock()
}

// take returns the mean loudness (dB above -127 dBov) since the last call
// and resets the meter; zero if no packet arrived.
func (l *LevelMeter) take() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == 0 {
		return 0
	}
	m := l.sum / float64(l.n)
	l.sum, l.n = 0, 0
	return m
}

// SpeakerConfig tunes a SpeakerDetector. Zero fields take their defaults.
type SpeakerConfig struct {
	// ActiveLevel is the audio level in -dBov at or below which (that is, at
	// least this loud) a smoothed stream counts as speaking. Default 50.
	ActiveLevel uint8
	// Smoothing is the weight of the previous value in the exponential
	// moving average applied at each tick, in [0,1). Default 0.6.
	Smoothing float64
	// SwitchMargin is how many dB louder than the current dominant speaker
	// another speaker must be to take over. Default 3.
	SwitchMargin float64
}

type speakerState struct {
	meter    *LevelMeter
	smoothed float64
}

// SpeakerDetector derives the active speakers (everyone currently above
// the speaking threshold) and the dominant speaker (the loudest, with
// hysteresis) from per-stream audio levels. Tick must be called
// periodically by one goroutine; Add and Remove may be called from any.
type SpeakerDetector struct {
	threshold float64
	smoothing float64
	margin    float64

	mu       sync.Mutex
	streams  map[string]*speakerState
	active   []string
	dominant string
}

// NewSpeakerDetector returns a detector with cfg's settings.
func NewSpeakerDetector(cfg SpeakerConfig) *SpeakerDetector {
	if cfg.ActiveLevel == 0 {
		cfg.ActiveLevel = 50
	}
	if cfg.Smoothing <= 0 || cfg.Smoothing >= 1 {
		cfg.Smoothing = 0.6
	}
	if cfg.SwitchMargin <= 0 {
		cfg.SwitchMargin = 3
	}
	return &SpeakerDetector{
		threshold: float64(127 - min(cfg.ActiveLevel, 127)),
		smoothing: cfg.Smoothing,
		margin:    cfg.SwitchMargin,
		streams:   make(map[string]*speakerState),
	}
}

// Add registers a speaker id and returns the meter its audio feeds. Adding
// an id again returns its existing meter.
func (d *SpeakerDetector) Add(id string) *LevelMeter {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.streams[id]; ok {
		return s.meter
	}
	s := &speakerState{meter: &LevelMeter{}}
	d.streams[id] = s
	return s.meter
}

// Remove forgets a speaker.
func (d *SpeakerDetector) Remove(id string) {
	d.mu.Lock()
	delete(d.streams, id)
	d.mu.Unlock()
}

// Tick folds the levels seen since the previous tick into the smoothed
// loudness of each speaker and returns the active speakers (sorted), the
// dominant speaker, and whether either changed since the previous tick. The
// dominant speaker stays the last one heard while nobody speaks, and is
// cleared when that speaker is removed.
func (d *SpeakerDetector) Tick() (active []string, dominant string, changed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var cur []string
	best, bestLevel := "", 0.0
	for id, s := range d.streams {
		s.smoothed = d.smoothing*s.smoothed + (1-d.smoothing)*s.meter.take()
		if s.smoothed >= d.threshold {
			cur = append(cur, id)
			if s.smoothed > bestLevel || (s.smoothed == bestLevel && id < best) {
				best, bestLevel = id, s.smoothed
			}
		}
	}
	slices.Sort(cur)
	if !slices.Equal(cur, d.active) {
		d.active = cur
		changed = true
	}
	dom, ok := d.streams[d.dominant]
	switch {
	case !ok && d.dominant != "":
		d.dominant = best
		changed = true
	case best == "" || best == d.dominant:
	case !ok || dom.smoothed < d.threshold || bestLevel >= dom.smoothed+d.margin:
		d.dominant = best
		changed = true
	}
	return slices.Clone(d.active), d.dominant, changed
}
