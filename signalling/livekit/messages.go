package livekit

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"
)

// Parsing of what clients send: the join request of the v1 signal path,
// signal requests, data packets, and the SDP rewriting that gives
// published tracks their LiveKit IDs. Every function here is fuzzed
// (fuzz_test.go).

// maxJoinRequest bounds a join request after decompression.
const maxJoinRequest = 256 << 10

// parseJoinRequest decodes the join_request query parameter of
// /rtc/v1 (livekit-client's single PeerConnection signal path): URL-safe
// base64 of a WrappedJoinRequest whose JoinRequest may be gzipped.
func parseJoinRequest(param string) (*livekit.JoinRequest, error) {
	if param == "" {
		return &livekit.JoinRequest{}, nil
	}
	if len(param) > 4*maxJoinRequest/3+4 {
		return nil, fmt.Errorf("%w: join request too large", ErrProtocol)
	}
	raw, err := base64.URLEncoding.DecodeString(param)
	if err != nil {
		if raw, err = base64.RawURLEncoding.DecodeString(param); err != nil {
			return nil, fmt.Errorf("%w: join request: %w", ErrProtocol, err)
		}
	}
	var w livekit.WrappedJoinRequest
	if err := proto.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("%w: join request: %w", ErrProtocol, err)
	}
	b := w.JoinRequest
	switch w.Compression {
	case livekit.WrappedJoinRequest_NONE:
	case livekit.WrappedJoinRequest_GZIP:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%w: join request: %w", ErrProtocol, err)
		}
		b, err = io.ReadAll(io.LimitReader(zr, maxJoinRequest+1))
		if err != nil {
			return nil, fmt.Errorf("%w: join request: %w", ErrProtocol, err)
		}
		if len(b) > maxJoinRequest {
			return nil, fmt.Errorf("%w: join request too large", ErrProtocol)
		}
	default:
		return nil, fmt.Errorf("%w: join request compression %d", ErrProtocol, w.Compression)
	}
	var jr livekit.JoinRequest
	if err := proto.Unmarshal(b, &jr); err != nil {
		return nil, fmt.Errorf("%w: join request: %w", ErrProtocol, err)
	}
	return &jr, nil
}

// decodeRequest parses one WebSocket message as a SignalRequest.
func decodeRequest(b []byte) (*livekit.SignalRequest, error) {
	var req livekit.SignalRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	if req.Message == nil {
		return nil, fmt.Errorf("%w: empty signal request", ErrProtocol)
	}
	return &req, nil
}

// msidLine matches the msid of an m-line (RFC 8830: a=msid:<stream>
// <track>) and the msid attribute of an ssrc (RFC 5576).
var msidLine = regexp.MustCompile(`^(a=msid:|a=ssrc:\d+ msid:)(\S+) (\S+)\s*$`)

// rewriteMsid rewrites the msid of m-lines (RFC 8830 a=msid:<stream>
// <track>, and RFC 5576 a=ssrc:<ssrc> msid:) whose track ID idsOf knows
// to the stream and track IDs it gives; other lines are kept as they are.
// Offers from clients: the client's MediaStreamTrack ID (the "cid" of its
// AddTrackRequest) becomes the track SID, the stream ID
// "<participant SID>|<track SID>", the stream ID livekit-client reads to
// tell whose track it receives (publishedIDs). Answers to clients: the
// tracks of foreign participants get the same layout (foreign.go).
func rewriteMsid(sdp string, idsOf func(track string) (stream, newTrack string, ok bool)) string {
	if !strings.Contains(sdp, "msid:") {
		return sdp
	}
	lines := strings.SplitAfter(sdp, "\n")
	for i, l := range lines {
		m := msidLine.FindStringSubmatch(strings.TrimRight(l, "\r\n"))
		if m == nil {
			continue
		}
		stream, track, ok := idsOf(m[3])
		if !ok {
			continue
		}
		eol := l[len(strings.TrimRight(l, "\r\n")):]
		lines[i] = m[1] + stream + " " + track + eol
	}
	return strings.Join(lines, "")
}

// publishedIDs is the rewriteMsid mapping of a client's offer: cid to
// "<participant SID>|<track SID>" and the track SID.
func publishedIDs(participantSID string, sidOf func(cid string) (string, bool)) func(string) (string, string, bool) {
	return func(cid string) (string, string, bool) {
		sid, ok := sidOf(cid)
		return participantSID + "|" + sid, sid, ok
	}
}

// midToTrack maps the mids of the m-lines of an SDP to the LiveKit track
// SIDs they carry (msid track IDs that are track SIDs), for the
// mid_to_track_id of an answer in single PeerConnection mode.
func midToTrack(sdp string) map[string]string {
	out := map[string]string{}
	mid, track := "", ""
	flush := func() {
		if mid != "" && strings.HasPrefix(track, "TR_") {
			out[mid] = track
		}
		mid, track = "", ""
	}
	for _, l := range strings.Split(sdp, "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.HasPrefix(l, "m="):
			flush()
		case strings.HasPrefix(l, "a=mid:"):
			mid = strings.TrimPrefix(l, "a=mid:")
		case strings.HasPrefix(l, "a=msid:"):
			if f := strings.Fields(strings.TrimPrefix(l, "a=msid:")); len(f) == 2 {
				track = f[1]
			}
		}
	}
	flush()
	return out
}

// relayPacket checks a data packet a client sent and stamps it with its
// sender, as a LiveKit server does before relaying it; ok false for a
// packet that is not relayed (unparsable, or a kind only the server
// handles).
func relayPacket(b []byte, sid, identity string) (out []byte, dest []string, ok bool) {
	var dp livekit.DataPacket
	if err := proto.Unmarshal(b, &dp); err != nil {
		return nil, nil, false
	}
	dp.ParticipantIdentity = identity
	dp.ParticipantSid = sid
	if u := dp.GetUser(); u != nil {
		u.ParticipantSid = sid
		u.ParticipantIdentity = identity
		if len(dp.DestinationIdentities) == 0 {
			dp.DestinationIdentities = u.DestinationIdentities
		}
	}
	out, err := proto.Marshal(&dp)
	if err != nil {
		return nil, nil, false
	}
	return out, dp.DestinationIdentities, true
}
