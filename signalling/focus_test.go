package signalling

import (
	"testing"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestGroupCall runs a call through the focus: two participants, then
// four, each receiving everyone else's audio and video; then one hangs
// up and the others' connections drop its tracks; the conference ends
// when the last one leaves.
func TestGroupCall(t *testing.T) {
	e := newEnv(t, envOpts{autoSubscribe: true})
	owner := e.user(t, "owner")
	const conf = "conf1"
	room := e.callRoom(t, owner, conf)

	var ps []*participant
	for _, name := range []string{"alice", "bob"} {
		p := e.participant(t, name, room, conf, partOpts{})
		p.invite()
		ps = append(ps, p)
	}
	waitMedia(t, ps)
	if n := e.focus.Calls(); n != 2 {
		t.Fatalf("focus has %d calls, want 2", n)
	}

	for _, name := range []string{"carol", "dave"} {
		p := e.participant(t, name, room, conf, partOpts{})
		p.invite()
		ps = append(ps, p)
	}
	waitMedia(t, ps)
	if got := gauge(t, e.sfuReg, "switchboard_sfu_conferences"); got != 1 {
		t.Fatalf("%v conferences, want 1", got)
	}
	// Everyone knows whose stream is whose.
	for _, p := range ps {
		for _, o := range ps {
			if o == p {
				continue
			}
			o := o
			testkit.Eventually(t, testTimeout, p.name+" metadata for "+o.name, func() bool {
				s, ok := p.metaStream(o.name + "-stream")
				return ok && s.UserID == string(o.cli.UserID) && s.DeviceID == string(o.cli.DeviceID) &&
					s.Tracks[o.name+"-audio"].Kind == "audio" && s.Tracks[o.name+"-video"].Kind == "video"
			})
		}
	}

	// Dave hangs up: the others' connections are renegotiated without
	// his tracks and their metadata drops his stream.
	dave := ps[3]
	dave.hangup()
	testkit.Eventually(t, testTimeout, "focus to drop dave", func() bool { return e.focus.Calls() == 3 })
	dave.close()
	for _, p := range ps[:3] {
		testkit.Eventually(t, testTimeout, p.name+" renegotiated without dave", func() bool {
			_, inMeta := p.metaStream("dave-stream")
			return !inMeta && !p.offeredTrack("dave-audio") && !p.offeredTrack("dave-video")
		})
	}
	// The three still hear and see each other.
	base := map[*participant]map[string]int64{}
	for _, p := range ps[:3] {
		base[p] = map[string]int64{}
		for _, o := range ps[:3] {
			if o != p {
				base[p][o.name+"-video"] = p.received(o.name + "-video")
			}
		}
	}
	for _, p := range ps[:3] {
		for tr, n := range base[p] {
			testkit.Eventually(t, testTimeout, p.name+" still receiving "+tr, func() bool { return p.received(tr) > n+10 })
		}
	}

	for _, p := range ps[:3] {
		p.hangup()
	}
	testkit.Eventually(t, testTimeout, "all calls to end", func() bool { return e.focus.Calls() == 0 })
	testkit.Eventually(t, testTimeout, "the conference to end", func() bool {
		return gauge(t, e.sfuReg, "switchboard_sfu_conferences") == 0 &&
			gauge(t, e.sfuReg, "switchboard_sfu_participants") == 0
	})
	if r, ok := dave.hangupReason(dave.callID); ok {
		t.Errorf("dave hung up himself but got a hangup (%q)", r)
	}
}

// waitMedia waits until every participant is answered and receives the
// others' audio and video.
func waitMedia(t *testing.T, ps []*participant) {
	t.Helper()
	for _, p := range ps {
		testkit.Eventually(t, testTimeout, p.name+" answered", p.isAnswered)
	}
	for _, p := range ps {
		var others []*participant
		for _, o := range ps {
			if o != p {
				others = append(others, o)
			}
		}
		testkit.Eventually(t, testTimeout, p.name+" receiving the others", func() bool { return p.receivesFrom(others...) })
	}
}
