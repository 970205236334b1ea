package sfu

import (
	"errors"
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testkit.PionClosing)
}

// TestConferenceForwarding: three clients publish audio and video over
// real loopback UDP; everyone receives everyone else's tracks with the
// publisher's IDs; when one leaves, its tracks disappear from the others;
// all goroutines end after close.
func TestConferenceForwarding(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.PionClosing)
	s := newTestSFU(t, nil)
	defer s.Close()

	names := []string{"alice", "bob", "carol"}
	clients := map[string]*testClient{}
	for _, n := range names {
		clients[n] = joinClient(t, s, "conf1", n, clientOpts{audio: true, video: true, level: 127})
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()

	for _, rx := range names {
		for _, tx := range names {
			if rx == tx {
				continue
			}
			for _, kind := range []string{"audio", "video"} {
				id := tx + "-" + kind
				testkit.Eventually(t, testTimeout, fmt.Sprintf("%s receiving %s", rx, id), func() bool {
					tr := clients[rx].track(id)
					return tr != nil && tr.Packets.Load() > 20
				})
				if tr := clients[rx].track(id); tr.StreamID != tx+"-stream" {
					t.Errorf("%s sees %s in stream %q, want %q", rx, id, tr.StreamID, tx+"-stream")
				}
			}
		}
	}
	for _, rx := range names {
		testkit.Eventually(t, testTimeout, rx+" track list", func() bool {
			clients[rx].mu.Lock()
			defer clients[rx].mu.Unlock()
			return len(clients[rx].tracks) == 4
		})
	}

	// Carol leaves: the others' receivers of her tracks end and the track
	// list no longer has them.
	carol := clients["carol"]
	if err := carol.p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-carol.closed; !errors.Is(err, ErrLeft) {
		t.Errorf("close reason %v, want ErrLeft", err)
	}
	carol.close()
	delete(clients, "carol")
	for _, rx := range []string{"alice", "bob"} {
		for _, kind := range []string{"audio", "video"} {
			testkit.Eventually(t, testTimeout, rx+" losing carol-"+kind, func() bool {
				tr := clients[rx].track("carol-" + kind)
				return tr.Ended.Load()
			})
		}
		testkit.Eventually(t, testTimeout, rx+" track list without carol", func() bool {
			clients[rx].mu.Lock()
			defer clients[rx].mu.Unlock()
			for _, ti := range clients[rx].tracks {
				if ti.ParticipantID == "carol" {
					return false
				}
			}
			return len(clients[rx].tracks) == 2
		})
	}
	if st := s.Stats(); st != (Stats{Conferences: 1, Participants: 2, Tracks: 4}) {
		t.Errorf("stats after carol left: %+v", st)
	}
	// Alice and Bob still hear each other.
	before := clients["alice"].track("bob-audio").Packets.Load()
	testkit.Eventually(t, testTimeout, "alice still receiving bob", func() bool {
		return clients["alice"].track("bob-audio").Packets.Load() > before+10
	})
}
