package sfu

import (
	"testing"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// keyframes returns the widths of the key frames received so far.
func keyframes(r *recvTrack) []uint16 {
	r.Mu.Lock()
	defer r.Mu.Unlock()
	return append([]uint16(nil), r.KeyWidths...)
}

// waitKeyframes waits until n more key frames arrived after index from,
// and returns their widths.
func waitKeyframes(t *testing.T, r *recvTrack, from, n int, what string) []uint16 {
	t.Helper()
	testkit.Eventually(t, testTimeout, what, func() bool { return len(keyframes(r)) >= from+n })
	return keyframes(r)[from:]
}

// waitWidth waits until the last key frame received has width w and
// returns how many key frames had arrived then.
func waitWidth(t *testing.T, r *recvTrack, w uint16) int {
	t.Helper()
	testkit.Eventually(t, testTimeout, "key frame of width "+itoa(int(w)), func() bool {
		k := keyframes(r)
		return len(k) > 0 && k[len(k)-1] == w
	})
	return len(keyframes(r))
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}

// TestSimulcastLayerSwitching: a publisher sends three VP8 layers (q, h, f
// at 320, 640, 1280 wide). A subscriber capped at a low bit rate gets the
// low layer; without the cap it switches up; with a size limit it gets the
// middle layer; and what it received is one stream: one SSRC, sequence
// numbers without a gap, timestamps that never go back.
func TestSimulcastLayerSwitching(t *testing.T) {
	s := newTestSFU(t, func(c *Config) { c.AllocationInterval = 100 * 1e6 })
	defer s.Close()
	pub := joinClient(t, s, "sc", "pub", clientOpts{video: true, simulcast: []string{"q", "h", "f"}, videoKbps: 60})
	defer pub.close()
	sub := joinClient(t, s, "sc", "sub", clientOpts{})
	defer sub.close()
	sub.p.SetMaxBitrate(150_000) // q (~70 kbit/s) fits, h (~200 kbit/s) does not

	testkit.Eventually(t, testTimeout, "subscriber receiving video", func() bool {
		r := sub.track("pub-video")
		return r != nil && r.Packets.Load() > 50
	})
	r := sub.track("pub-video")
	at := waitWidth(t, r, 320)
	if k := waitKeyframes(t, r, at, 2, "more low-layer key frames"); k[0] != 320 || k[1] != 320 {
		t.Fatalf("capped subscriber got key frames of widths %v, want the 320 layer", k)
	}
	t.Logf("capped at 150 kbit/s: receiving the 320 layer")

	sub.p.SetMaxBitrate(0)
	at = waitWidth(t, r, 1280)
	t.Logf("cap lifted (estimate %d bit/s): switched up to the 1280 layer", sub.p.EstimatedBitrate())

	if err := sub.p.UpdateSubscriptions([]Subscription{{TrackID: "pub-video", MaxWidth: 700, MaxHeight: 700}}, nil); err != nil {
		t.Fatal(err)
	}
	at = waitWidth(t, r, 640)
	if k := waitKeyframes(t, r, at, 1, "more mid-layer key frames"); k[0] != 640 {
		t.Fatalf("size-limited subscriber got key frames %v, want 640", k)
	}
	t.Logf("limited to 700x700: receiving the 640 layer")

	sub.p.SetMaxBitrate(120_000)
	waitWidth(t, r, 320)
	t.Logf("capped again: back to the 320 layer")

	// One continuous stream.
	r.Mu.Lock()
	defer r.Mu.Unlock()
	if len(r.SSRCs) != 1 {
		t.Errorf("received %d SSRCs, want 1", len(r.SSRCs))
	}
	tsBySeq := map[uint16]uint32{}
	first := r.Seqs[0]
	var maxOff int
	for i, seq := range r.Seqs {
		tsBySeq[seq] = r.Timestamps[i]
		if off := int(uint16(seq - first)); off < 30000 && off > maxOff {
			maxOff = off
		}
	}
	missing := 0
	prevTS := r.Timestamps[0]
	for off := 0; off <= maxOff; off++ {
		ts, ok := tsBySeq[first+uint16(off)]
		if !ok {
			missing++
			continue
		}
		if int32(ts-prevTS) < 0 {
			t.Errorf("timestamp goes back at seq %d: %d after %d", first+uint16(off), ts, prevTS)
		}
		prevTS = ts
	}
	t.Logf("received %d packets over %d sequence numbers, %d missing, %d key frames",
		len(r.Seqs), maxOff+1, missing, len(r.KeyWidths))
	if missing > 0 {
		t.Errorf("%d sequence numbers missing: the stream is not continuous", missing)
	}
}

// TestSimulcastPublishersReceiveEachOther: two clients that both publish
// simulcast video on a sendrecv m-line (what pion's and Chrome's addTrack
// offer) receive each other's video and audio. The SFU must not send a
// track on a client's own simulcast m-line: the client cannot tell that
// stream from its simulcast layers and drops it.
func TestSimulcastPublishersReceiveEachOther(t *testing.T) {
	s := newTestSFU(t, nil)
	defer s.Close()
	rids := []string{"q", "h", "f"}
	a := joinClient(t, s, "sc2", "a", clientOpts{audio: true, video: true, simulcast: rids, level: 127})
	defer a.close()
	b := joinClient(t, s, "sc2", "b", clientOpts{audio: true, video: true, simulcast: rids, level: 127})
	defer b.close()
	c := joinClient(t, s, "sc2", "c", clientOpts{audio: true, video: true, simulcast: rids, level: 127})
	defer c.close()
	clients := map[string]*testClient{"a": a, "b": b, "c": c}
	for rx, rc := range clients {
		for tx := range clients {
			if rx == tx {
				continue
			}
			for _, kind := range []string{"audio", "video"} {
				id := tx + "-" + kind
				testkit.Eventually(t, testTimeout, rx+" receiving "+id, func() bool {
					r := rc.track(id)
					return r != nil && r.Packets.Load() > 20
				})
			}
		}
	}
}
