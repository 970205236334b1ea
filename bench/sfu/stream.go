package main

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/switchboard-chat/switchboard/internal/testkit/rtcclient"
)

// The synthetic publisher stream, the same for the SFU run and the
// reference forwarder run: Opus-sized audio at 50 packets/s and VP8 video
// in three simulcast layers at 30 frames/s, about 2.5 Mbit/s of video in
// all. Packets of a frame are paced evenly across the frame interval, as
// browsers pace their sends, so that a frame is not one burst.
const (
	audioInterval = 20 * time.Millisecond
	audioPayload  = 80 // bytes, about 32 kbit/s of Opus
	frameInterval = time.Second / 30
	maxVideoBytes = 1000 // payload bytes per video packet, at most
	// trailerLen is the benchmark trailer at the end of every payload:
	// a magic number and the send time (wall clock, ns), so that a
	// receiver in another process can compute the one-way delay.
	trailerLen = 12
	magic      = 0x53426e63 // "SBnc"
)

// layerBitrates are the simulcast layers' video rates, lowest first
// (quarter, half and full size), 2.5 Mbit/s together.
var layerBitrates = [3]int{150_000, 500_000, 1_850_000}

// layerWidths are the frame widths the layers announce in key frames.
var layerWidths = [3]uint16{320, 640, 1280}

// layerRIDs are the RTP stream IDs (RFC 8852) of the layers.
var layerRIDs = [3]string{"q", "h", "f"}

// packetsPerFrame is how many packets one frame of layer i takes.
func packetsPerFrame(i int) int {
	frameBytes := layerBitrates[i] / 8 / 30
	return (frameBytes + maxVideoBytes - 1) / maxVideoBytes
}

// videoPayloadSize is the payload size of each packet of layer i.
func videoPayloadSize(i int) int {
	return layerBitrates[i] / 8 / 30 / packetsPerFrame(i)
}

// streamPPS is the packets per second one publisher sends, all layers.
func streamPPS() int {
	n := int(time.Second / audioInterval)
	for i := range layerBitrates {
		n += packetsPerFrame(i) * 30
	}
	return n
}

// forwardedPPS is the packets per second one subscriber receives of one
// publisher: audio and the top video layer (the benchmark pins the
// bandwidth estimate high enough for it).
func forwardedPPS() int {
	return int(time.Second/audioInterval) + packetsPerFrame(2)*30
}

// packetKind says which stream a scheduled packet belongs to: audioStream
// or a video layer index.
type packetKind int

const audioStream packetKind = -1

// schedule yields the publisher's packets in send order with their due
// times, relative to the start.
type schedule struct {
	nextAudio time.Duration
	audioSeq  int
	frame     [3]int // current frame per layer
	pkt       [3]int // next packet of the current frame per layer
}

// next returns the next packet due: its stream, frame number, index in the
// frame, packets in the frame, and due time.
func (s *schedule) next() (kind packetKind, frame, idx, npk int, due time.Duration) {
	best := audioStream
	due = s.nextAudio
	for i := range 3 {
		n := packetsPerFrame(i)
		d := time.Duration(s.frame[i])*frameInterval + time.Duration(s.pkt[i])*frameInterval/time.Duration(n)
		if d < due {
			best, due = packetKind(i), d
		}
	}
	if best == audioStream {
		s.audioSeq++
		s.nextAudio += audioInterval
		return audioStream, s.audioSeq - 1, 0, 1, due
	}
	i := int(best)
	frame, idx, npk = s.frame[i], s.pkt[i], packetsPerFrame(i)
	s.pkt[i]++
	if s.pkt[i] == npk {
		s.pkt[i] = 0
		s.frame[i]++
	}
	return best, frame, idx, npk, due
}

// keyframeEvery is the key frame period in frames (the SFU also asks for
// key frames with PLI; see publisher.keyframeDue).
const keyframeEvery = 60

// buildPayload writes the payload of one packet into buf and returns it:
// for video a VP8 payload descriptor (RFC 7741 section 4.2) with picture ID
// and TL0PICIDX, the VP8 payload header (key frames with the size header),
// filler, then the trailer with the send time. The caller stamps the time
// with stampPayload just before sending.
func buildPayload(buf []byte, kind packetKind, frame, idx int, key bool) []byte {
	if kind == audioStream {
		b := buf[:audioPayload]
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}
	layer := int(kind)
	w := layerWidths[layer]
	return rtcclient.VP8Payload(buf, uint16(frame)&0x7fff, uint8(frame), idx == 0, key, w, w*9/16, videoPayloadSize(layer))
}

// stampPayload writes the trailer (magic and now) over the last trailerLen
// bytes of payload.
func stampPayload(payload []byte, now time.Time) {
	t := payload[len(payload)-trailerLen:]
	binary.BigEndian.PutUint32(t, magic)
	binary.BigEndian.PutUint64(t[4:], uint64(now.UnixNano()))
}

// readStamp returns the send time from the trailer of an RTP packet
// without padding, or false if it has none.
func readStamp(pkt []byte) (int64, bool) {
	if len(pkt) < 12+trailerLen || pkt[0]&0x20 != 0 {
		return 0, false
	}
	t := pkt[len(pkt)-trailerLen:]
	if binary.BigEndian.Uint32(t) != magic {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(t[4:])), true
}

// histogram counts one-way delays in 10 µs buckets up to 200 ms, without
// allocating or locking on the receive path.
type histogram struct {
	buckets [20001]atomic.Uint64
	count   atomic.Uint64
}

const bucketWidth = 10 * time.Microsecond

func (h *histogram) add(d time.Duration) {
	i := int(d / bucketWidth)
	if i < 0 {
		i = 0
	}
	if i >= len(h.buckets) {
		i = len(h.buckets) - 1
	}
	h.buckets[i].Add(1)
	h.count.Add(1)
}

// quantile returns the q-quantile (0 < q < 1) as the upper edge of its
// bucket, or 0 when the histogram is empty.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n)) + 1
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= rank {
			return time.Duration(i+1) * bucketWidth
		}
	}
	return time.Duration(len(h.buckets)) * bucketWidth
}

// recorder is where receivers count packets and delays; the window is
// swapped at the start of the measurement.
type recorder struct {
	hist    atomic.Pointer[histogram]
	packets atomic.Uint64
	sent    atomic.Uint64 // packets the publishers sent
}

func newRecorder() *recorder {
	r := &recorder{}
	r.hist.Store(&histogram{})
	return r
}

// observe records one received packet.
func (r *recorder) observe(pkt []byte, now time.Time) {
	r.packets.Add(1)
	if sent, ok := readStamp(pkt); ok {
		r.hist.Load().add(time.Duration(now.UnixNano() - sent))
	}
}

// reset starts a new measurement window.
func (r *recorder) reset() {
	r.hist.Store(&histogram{})
	r.packets.Store(0)
	r.sent.Store(0)
}
