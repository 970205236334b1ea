package livekit

import (
	"crypto/sha256"
	"encoding/base32"
	"slices"
	"strings"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-chat/switchboard/sfu"
	"github.com/switchboard-chat/switchboard/signalling/rtcroom"
)

// A Matrix room's call is one SFU conference for both protocols
// (rtcroom.Conference): LiveKit clients share it with the native focus's
// MSC3401 participants (package signalling), who are "foreign" here. The
// SFU tells each session the tracks it can receive (sfu.TrackInfo); a
// foreign participant is presented to livekit-client as a LiveKit
// participant made from them, because livekit-client drops a received
// track whose stream ID names no participant it knows (its Room's
// onTrackAdded parses "<participant SID>|<track SID>"):
//
//   - participant SID: foreignSID of the SFU participant ID, stable;
//   - identity: "<user_id>:<device_id>" as PeerDirectory names it (the
//     identity /sfu/get gives a device, so Element Call matches it to the
//     device's call membership), else the SFU participant ID;
//   - tracks: SID foreignTrackSID ("TR_…", which livekit-client expects),
//     source camera or microphone by kind;
//   - the answers' msid lines of its tracks are rewritten to
//     "<participant SID>|<track SID> <track SID>".
//
// Subscriptions name the LiveKit track SIDs; sfuTrack maps them back.

// PeerDirectory names the Matrix user and device of an SFU participant
// of another protocol; the native focus (signalling.Focus) is one.
type PeerDirectory interface {
	Peer(participantID string) (userID, deviceID string, ok bool)
}

// isSessionSID reports whether an SFU participant ID is one of this
// server's sessions: their IDs are newID("PA_…"), which no Matrix user
// ID (the native focus's participant IDs start with one) can be.
func isSessionSID(pid string) bool { return strings.HasPrefix(pid, "PA_") }

func hashID(prefix string, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return prefix + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:])[:12]
}

// foreignSID is the LiveKit participant SID of foreign SFU participant
// pid; foreignTrackSID that of its track trackID.
func foreignSID(pid string) string               { return hashID("PA_", "participant", pid) }
func foreignTrackSID(pid, trackID string) string { return hashID("TR_", "track", pid, trackID) }

// foreignPeer is what a session told its client of one foreign
// participant.
type foreignPeer struct {
	info *livekit.ParticipantInfo
	sig  string // the tracks it was told, to send updates on change only
}

// foreignTrack is one foreign track: its LiveKit SIDs and SFU track ID.
type foreignTrack struct {
	psid, tsid, sfuID string
}

// conference is the SFU conference of the session's room: the Matrix
// room's call when the token names one and its call slot, else the
// LiveKit room of the token.
func (ss *session) conference() string {
	if m := ss.grant.Matrix; m.RoomID != "" && m.SlotID == rtcroom.CallSlot {
		return rtcroom.Conference(m.RoomID)
	}
	return "livekit/" + ss.grant.Room
}

// foreignUpdates brings the session's view of the foreign participants
// up to date with tis (what it can receive) and returns the participant
// updates to send: new or changed ones ACTIVE, gone ones DISCONNECTED.
func (ss *session) foreignUpdates(tis []sfu.TrackInfo) []*livekit.ParticipantInfo {
	byPeer := map[string][]sfu.TrackInfo{}
	for _, ti := range tis {
		if !isSessionSID(ti.ParticipantID) {
			byPeer[ti.ParticipantID] = append(byPeer[ti.ParticipantID], ti)
		}
	}
	names := map[string]string{}
	for pid := range byPeer {
		names[pid] = pid
		if d := ss.s.cfg.Peers; d != nil {
			if u, dev, ok := d.Peer(pid); ok {
				names[pid] = u + ":" + dev
			}
		}
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var out []*livekit.ParticipantInfo
	tracks := map[string]foreignTrack{}
	for pid, list := range byPeer {
		slices.SortFunc(list, func(a, b sfu.TrackInfo) int { return strings.Compare(a.TrackID, b.TrackID) })
		var sig strings.Builder
		psid := foreignSID(pid)
		info := &livekit.ParticipantInfo{Sid: psid, Identity: names[pid], Name: names[pid],
			State: livekit.ParticipantInfo_ACTIVE, IsPublisher: true, Kind: livekit.ParticipantInfo_STANDARD,
			Permission: &livekit.ParticipantPermission{CanSubscribe: true, CanPublish: true}}
		for _, ti := range list {
			tsid := foreignTrackSID(pid, ti.TrackID)
			tracks[tsid] = foreignTrack{psid: psid, tsid: tsid, sfuID: ti.TrackID}
			t := &livekit.TrackInfo{Sid: tsid, Name: ti.TrackID, MimeType: ti.MimeType,
				Type: livekit.TrackType_AUDIO, Source: livekit.TrackSource_MICROPHONE, Simulcast: len(ti.Layers) > 1}
			if ti.Kind == "video" {
				t.Type, t.Source = livekit.TrackType_VIDEO, livekit.TrackSource_CAMERA
			}
			info.Tracks = append(info.Tracks, t)
			sig.WriteString(ti.TrackID + "\x00" + ti.MimeType + "\x00" + strings.Join(ti.Layers, ",") + "\x00")
		}
		sig.WriteString(names[pid])
		if old := ss.foreign[pid]; old != nil && old.sig == sig.String() {
			continue
		}
		ss.version++
		info.Version = ss.version
		info.JoinedAt = ss.joinedAt
		ss.foreign[pid] = &foreignPeer{info: info, sig: sig.String()}
		out = append(out, proto.CloneOf(info))
	}
	for pid, fp := range ss.foreign {
		if _, ok := byPeer[pid]; ok {
			continue
		}
		delete(ss.foreign, pid)
		ss.version++
		gone := proto.CloneOf(fp.info)
		gone.State, gone.Tracks, gone.Version = livekit.ParticipantInfo_DISCONNECTED, nil, ss.version
		out = append(out, gone)
	}
	ss.foreignTracks = tracks
	return out
}

// sfuTrack maps a track SID the client names to the SFU's track ID.
func (ss *session) sfuTrack(sid string) string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ft, ok := ss.foreignTracks[sid]; ok {
		return ft.sfuID
	}
	return sid
}

// speakerSID is the LiveKit participant SID of an SFU participant.
func speakerSID(pid string) string {
	if isSessionSID(pid) {
		return pid
	}
	return foreignSID(pid)
}

// rewriteAnswer gives the foreign tracks in an answer the stream and
// track IDs livekit-client looks them up by.
func (ss *session) rewriteAnswer(sdp string) string {
	ss.mu.Lock()
	bySFU := make(map[string]foreignTrack, len(ss.foreignTracks))
	for _, ft := range ss.foreignTracks {
		bySFU[ft.sfuID] = ft
	}
	ss.mu.Unlock()
	if len(bySFU) == 0 {
		return sdp
	}
	return rewriteMsid(sdp, func(track string) (string, string, bool) {
		ft, ok := bySFU[track]
		return ft.psid + "|" + ft.tsid, ft.tsid, ok
	})
}

// Peer names the Matrix user and device of the LiveKit participant with
// SFU participant ID pid, for the native focus's stream metadata; ok is
// false for a participant unknown here or whose token names no Matrix
// member.
func (s *Server) Peer(pid string) (userID, deviceID string, ok bool) {
	s.mu.Lock()
	ss := s.sessions[pid]
	s.mu.Unlock()
	if ss == nil || ss.grant.Matrix.UserID == "" {
		return "", "", false
	}
	return ss.grant.Matrix.UserID, ss.grant.Matrix.DeviceID, true
}
