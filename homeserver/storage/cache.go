package storage

import (
	"sync"
	"sync/atomic"
	"time"
)

// readCaches hold what every /sync and every authenticated request reads
// and almost never changes: access tokens, filters and key counts.
//
// Each cache has a generation that writes which could change its entries
// bump; an entry of an older generation is a miss. A reader loads the
// generation before it queries and stores its result under that
// generation, and a writer bumps the generation both before its write and
// after its commit, so a result read while the write was in flight is
// never served after it. Token entries also
// expire after tokenCacheTTL, which bounds how long a device deleted by
// another process of a cluster stays usable here.
type readCaches struct {
	tokenGen atomic.Uint64
	keysGen  atomic.Uint64

	mu        sync.Mutex // guards the maps below
	tokens    map[string]tokenEntry
	filters   map[string][]byte
	keyCounts map[string]keyCountEntry
}

const (
	tokenCacheTTL  = 30 * time.Second
	readCacheLimit = 50000
)

type tokenEntry struct {
	gen     uint64
	expires time.Time
	dev     Device
}

type keyCountEntry struct {
	gen      uint64
	counts   map[string]int
	fallback []string
}

func (c *readCaches) token(hash string, now time.Time) (Device, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.tokens[hash]
	if !ok || e.gen != c.tokenGen.Load() || now.After(e.expires) {
		return Device{}, false
	}
	return e.dev, true
}

func (c *readCaches) putToken(hash string, gen uint64, d Device, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tokens == nil || len(c.tokens) >= readCacheLimit {
		c.tokens = make(map[string]tokenEntry)
	}
	c.tokens[hash] = tokenEntry{gen: gen, expires: now.Add(tokenCacheTTL), dev: d}
}

func (c *readCaches) filter(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.filters[key]
	return f, ok
}

func (c *readCaches) putFilter(key string, f []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.filters == nil || len(c.filters) >= readCacheLimit {
		c.filters = make(map[string][]byte)
	}
	c.filters[key] = f
}

func (c *readCaches) keyCount(key string) (keyCountEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.keyCounts[key]
	if !ok || e.gen != c.keysGen.Load() {
		return keyCountEntry{}, false
	}
	return e, true
}

func (c *readCaches) putKeyCount(key string, e keyCountEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keyCounts == nil || len(c.keyCounts) >= readCacheLimit {
		c.keyCounts = make(map[string]keyCountEntry)
	}
	c.keyCounts[key] = e
}
