package rtcclient

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

const testTimeout = 20 * time.Second

// connect negotiates a's offer with b's answer in-process.
func connect(t *testing.T, a, b *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	offer, err := a.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := b.AnswerOffer(ctx, offer)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
}

// TestTwoClients connects a publisher to a receiver on loopback: media
// flows and is recorded, and a PLI brings a key frame. (Two clients each
// open their own data channel, which pion does not pair; the sfu and
// signalling tests use it against the server.)
func TestTwoClients(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	pub, err := New(Config{Name: "a", Audio: true, AudioLevel: 127, Video: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := New(Config{Name: "b", Record: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	connect(t, pub, sub)
	pub.Start()

	testkit.Eventually(t, testTimeout, "audio and video at the receiver", func() bool {
		a, v := sub.Received("a-stream")
		return a > 10 && v > 10
	})
	if pub.OfferedTrack("a-audio") || !sub.OfferedTrack("a-video") {
		t.Error("OfferedTrack: want a's tracks in the publisher's offer only")
	}
	video := sub.Track("a-video")
	video.Mu.Lock()
	ssrcs, seqs := len(video.SSRCs), len(video.Seqs)
	video.Mu.Unlock()
	if ssrcs != 1 || seqs == 0 {
		t.Fatalf("video: %d SSRCs, %d recorded sequence numbers", ssrcs, seqs)
	}
	widths := func() []uint16 {
		video.Mu.Lock()
		defer video.Mu.Unlock()
		return slices.Clone(video.KeyWidths)
	}
	before := len(widths())
	var ssrc uint32
	video.Mu.Lock()
	for s := range video.SSRCs {
		ssrc = s
	}
	video.Mu.Unlock()
	if err := sub.PC().WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, testTimeout, "a key frame after the PLI", func() bool {
		return pub.PLIs() > 0 && len(widths()) > before
	})
	if w := widths(); w[len(w)-1] != 320 {
		t.Errorf("key frame widths %v, want 320", w)
	}

}

// TestAnswerOfferWaitsForStable: a server offer while the client's own
// offer is unanswered waits, and gives up with ErrNotStable.
func TestAnswerOfferWaitsForStable(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	a, err := New(Config{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(Config{Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := a.Offer(ctx); err != nil {
		t.Fatal(err)
	}
	offer, err := b.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, err := a.AnswerOffer(short, offer); !errors.Is(err, ErrNotStable) {
		t.Fatalf("AnswerOffer with an own offer pending: %v, want ErrNotStable", err)
	}
}

func TestVP8KeyframeWidth(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload []byte
		width   uint16
		key     bool
	}{
		{"key frame start", VP8Payload(nil, 1, 1, true, true, 640, 360, 100), 640, true},
		{"delta frame start", VP8Payload(nil, 1, 1, true, false, 640, 360, 100), 0, false},
		{"continuation", VP8Payload(nil, 1, 1, false, true, 640, 360, 100), 0, false},
		{"two-packet frame", VP8Frame(0, true)[0], 320, true},
		{"truncated", VP8Payload(nil, 1, 1, true, true, 640, 360, 100)[:8], 0, false},
		{"empty", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, key := VP8KeyframeWidth(tc.payload)
			if w != tc.width || key != tc.key {
				t.Errorf("got %d, %v; want %d, %v", w, key, tc.width, tc.key)
			}
		})
	}
}

func TestConfigRefused(t *testing.T) {
	if _, err := New(Config{Video: true, Simulcast: []string{"q", "h", "f", "x"}}); !errors.Is(err, ErrConfig) {
		t.Fatalf("four simulcast layers: %v, want ErrConfig", err)
	}
}
