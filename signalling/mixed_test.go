package signalling

import (
	"context"
	"net/http"
	"strings"
	"testing"

	lkproto "github.com/livekit/protocol/livekit"
	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/internal/testkit"
	"github.com/switchboard-chat/switchboard/internal/testkit/lkclient"
)

// TestOneConferencePerRoom puts a LiveKit client (MatrixRTC: /sfu/get,
// then the LiveKit signalling of signalling/livekit) and a native focus
// participant (MSC3401 membership, MSC3898 to-device invite) in the same
// Matrix room, with the SFU subscribing no one by itself (as switchboard
// serve runs it). Both land in one SFU conference (rtcroom.Conference),
// and each decodes the other's video from a key frame on:
//   - the LiveKit client is told of the native participant as a LiveKit
//     participant (identity "<user>:<device>", a camera and a microphone
//     track) and receives its video under that participant's SID (the
//     stream ID livekit-client files received tracks by);
//   - the native participant finds the LiveKit client's streams in its
//     sdp_stream_metadata under the LiveKit user's user and device,
//     subscribes (m.call.track_subscription) and receives them;
//   - the LiveKit client is sent the native participant's connection
//     quality.
//
// When both leave, the LiveKit client having seen the native one go, the
// SFU is empty; then both rejoin (the LiveKit user with a new connection,
// a new native participant) and media flows again; after the second
// leave the SFU is empty again, and newEnv checks for goroutine leaks.
func TestOneConferencePerRoom(t *testing.T) {
	e := newEnv(t, envOpts{livekit: true})
	owner := e.user(t, "owner")
	const conf = "conf1"
	room := e.callRoom(t, owner, conf)
	alice := e.user(t, "alice")
	if _, err := alice.JoinRoomByID(context.Background(), room); err != nil {
		t.Fatal(err)
	}

	for round, name := range []string{"bob", "carol"} {
		native := e.participant(t, name, room, conf, partOpts{})
		native.invite()
		testkit.Eventually(t, testTimeout, name+"'s answer", native.isAnswered)
		lk := joinLiveKit(t, e, alice)
		mixedMedia(t, e, native, lk, alice)

		// The native participant hangs up: the LiveKit client is told
		// it left; then the LiveKit client leaves.
		identity := string(native.cli.UserID) + ":" + string(native.cli.DeviceID)
		native.hangup()
		testkit.Eventually(t, testTimeout, "the LiveKit client to see "+name+" leave", func() bool {
			pi, ok := lk.Participant(identity)
			return ok && pi.GetState() == lkproto.ParticipantInfo_DISCONNECTED
		})
		lk.Close()
		native.close()
		testkit.Eventually(t, testTimeout, "an empty SFU after round "+string(rune('1'+round)), func() bool {
			st := e.sfu.Stats()
			return st.Conferences == 0 && st.Participants == 0 && st.Tracks == 0 && e.focus.Calls() == 0
		})
	}
}

// joinLiveKit joins alice's LiveKit client to the room's call the way
// Element Call does (OpenID token, /sfu/get, /rtc/v1), auto-subscribing.
func joinLiveKit(t *testing.T, e *env, alice *mautrix.Client) *lkclient.Client {
	t.Helper()
	rooms, err := alice.JoinedRooms(context.Background())
	if err != nil || len(rooms.JoinedRooms) != 1 {
		t.Fatalf("alice's rooms: %v %v", rooms, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	lk, err := lkclient.Join(ctx, http.DefaultClient, e.url, alice, rooms.JoinedRooms[0], "alice", true)
	if err != nil {
		t.Fatalf("LiveKit join: %v", err)
	}
	t.Cleanup(lk.Close)
	return lk
}

// mixedMedia checks that native and lk, in one conference, decode each
// other's video.
func mixedMedia(t *testing.T, e *env, native *participant, lk *lkclient.Client, alice *mautrix.Client) {
	t.Helper()
	testkit.Eventually(t, testTimeout, "one conference of two", func() bool {
		st := e.sfu.Stats()
		return st.Conferences == 1 && st.Participants == 2
	})

	// LiveKit side: the native participant as a LiveKit participant.
	identity := string(native.cli.UserID) + ":" + string(native.cli.DeviceID)
	var pi *lkproto.ParticipantInfo
	testkit.Eventually(t, testTimeout, "the LiveKit client told of "+native.name, func() bool {
		p, ok := lk.Participant(identity)
		if !ok || p.GetState() != lkproto.ParticipantInfo_ACTIVE || len(p.GetTracks()) != 2 {
			return false
		}
		pi = p
		return true
	})
	kinds := map[lkproto.TrackSource]bool{}
	for _, tr := range pi.GetTracks() {
		if !strings.HasPrefix(tr.GetSid(), "TR_") {
			t.Errorf("track SID %q is not TR_…, which livekit-client expects", tr.GetSid())
		}
		kinds[tr.GetSource()] = true
	}
	if !kinds[lkproto.TrackSource_CAMERA] || !kinds[lkproto.TrackSource_MICROPHONE] {
		t.Errorf("%s's tracks: %v, want a camera and a microphone", native.name, pi.GetTracks())
	}
	testkit.Eventually(t, testTimeout, "the LiveKit client decoding "+native.name+"'s video", func() bool {
		return lk.Video(pi.GetSid()).Keyframes > 0
	})
	testkit.Eventually(t, testTimeout, "the LiveKit client told "+native.name+"'s connection quality", func() bool {
		_, ok := lk.Quality(pi.GetSid())
		return ok
	})

	// Native side: alice's LiveKit streams in the metadata, subscribed.
	var subs []any
	var video string
	testkit.Eventually(t, testTimeout, native.name+"'s metadata of alice's LiveKit tracks", func() bool {
		native.mu.Lock()
		defer native.mu.Unlock()
		subs, video = nil, ""
		for sid, s := range native.meta {
			if s.UserID != string(alice.UserID) || s.DeviceID != string(alice.DeviceID) {
				continue
			}
			for tid, tr := range s.Tracks {
				subs = append(subs, map[string]any{"stream_id": sid, "track_id": tid})
				if tr.Kind == "video" {
					video = tid
				}
			}
		}
		return len(subs) == 2 && video != ""
	})
	native.sendDC(TypeTrackSubscription, map[string]any{"subscribe": subs})
	testkit.Eventually(t, testTimeout, native.name+" decoding alice's LiveKit video", func() bool {
		tr := native.rtc.Track(video)
		if tr == nil {
			return false
		}
		tr.Mu.Lock()
		defer tr.Mu.Unlock()
		return !tr.FirstKeyframe.IsZero()
	})
	if errs := lk.Errs(); len(errs) > 0 {
		t.Errorf("LiveKit client: %v", errs)
	}
}
