package media

import "sync"

// RateMeter measures the bit rate of a stream over windows of at least half
// a second, smoothed. It is safe for concurrent use and does not allocate.
type RateMeter struct {
	mu      sync.Mutex
	start   int64 // start of the current window, unix nanoseconds
	bytes   int64
	rate    float64 // bits per second, smoothed
	primed  bool
	lastAdd int64
}

const rateWindow = int64(500e6)

// Add records n bytes seen at now (unix nanoseconds).
func (m *RateMeter) Add(n int, now int64) {
	m.mu.Lock()
	if m.start == 0 {
		m.start = now
	}
	m.bytes += int64(n)
	m.lastAdd = now
	m.rollLocked(now)
	m.mu.Unlock()
}

func (m *RateMeter) rollLocked(now int64) {
	el := now - m.start
	if el < rateWindow {
		return
	}
	r := float64(m.bytes*8) * 1e9 / float64(el)
	if m.primed {
		m.rate = 0.5*m.rate + 0.5*r
	} else {
		m.rate, m.primed = r, true
	}
	m.start, m.bytes = now, 0
}

// Rate returns the smoothed bit rate at now, in bits per second. A stream
// silent for two seconds reads zero.
func (m *RateMeter) Rate(now int64) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.start == 0 || now-m.lastAdd > 2e9 {
		return 0
	}
	m.rollLocked(now)
	return int(m.rate)
}
