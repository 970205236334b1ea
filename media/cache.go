package media

import "sync"

// MaxPayloadSize is the largest RTP payload the cache stores; larger ones
// are refused. It covers a 1500-byte MTU.
const MaxPayloadSize = 1500

// PacketMeta is what the receive side learnt about a packet when it parsed
// it once, kept next to its payload so that forwarding and retransmission do
// not parse again.
type PacketMeta struct {
	SequenceNumber uint16
	Timestamp      uint32
	Marker         bool
	// Keyframe marks the first packet of a key frame.
	Keyframe bool
	// VP8 is the parsed descriptor when the codec is VP8.
	VP8 VP8Descriptor
	// Width and Height are the frame size a key frame announces (VP8 key
	// frame header, H.264 SPS), zero when the packet does not say.
	Width, Height uint16
	// HasAudioLevel, AudioLevel and Voice carry the RFC 6464 extension.
	HasAudioLevel bool
	AudioLevel    uint8
	Voice         bool
	// HasOrientation and Orientation carry the video orientation
	// extension (3GPP TS 26.114 section 7.4.5).
	HasOrientation bool
	Orientation    uint8
}

type cacheSlot struct {
	valid bool
	n     int
	meta  PacketMeta
	buf   [MaxPayloadSize]byte
}

// PacketCache keeps the last N packets of one RTP stream, indexed by
// sequence number, for NACK responses (RFC 4585 section 6.2.1) and for
// fan-out to subscribers. Its memory is allocated once; Put and Get copy and
// never allocate. It is safe for concurrent use.
type PacketCache struct {
	mask uint16

	mu    sync.RWMutex
	slots []cacheSlot
}

// NewPacketCache returns a cache of size packets, rounded up to a power of
// two between 16 and 32768.
func NewPacketCache(size int) *PacketCache {
	n := 16
	for n < size && n < 1<<15 {
		n <<= 1
	}
	return &PacketCache{mask: uint16(n - 1), slots: make([]cacheSlot, n)}
}

// Size is the number of packets the cache holds.
func (c *PacketCache) Size() int { return len(c.slots) }

// Put stores a copy of payload with its metadata (whose SequenceNumber is
// the key). It reports false if the payload is too large.
func (c *PacketCache) Put(payload []byte, meta *PacketMeta) bool {
	if len(payload) > MaxPayloadSize {
		return false
	}
	c.mu.Lock()
	s := &c.slots[meta.SequenceNumber&c.mask]
	s.valid = true
	s.n = copy(s.buf[:], payload)
	s.meta = *meta
	c.mu.Unlock()
	return true
}

// Get copies the payload of packet seq into dst and its metadata into meta.
// It reports false if the packet is not (or no longer) cached or dst is too
// small.
func (c *PacketCache) Get(seq uint16, dst []byte, meta *PacketMeta) (int, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := &c.slots[seq&c.mask]
	if !s.valid || s.meta.SequenceNumber != seq || len(dst) < s.n {
		return 0, false
	}
	*meta = s.meta
	return copy(dst, s.buf[:s.n]), true
}
