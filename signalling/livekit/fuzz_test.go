package livekit

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"
)

const seedSDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n" +
	"a=msid:stream cid-1\r\na=ssrc:1 msid:stream cid-1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=msid:PA_X|TR_Y TR_Y\r\n"

// FuzzSignalRequest: any bytes either decode to a request that the
// session's dispatch can take, or are refused; nothing panics.
func FuzzSignalRequest(f *testing.F) {
	for _, r := range []*livekit.SignalRequest{
		{Message: &livekit.SignalRequest_Ping{Ping: 1}},
		{Message: &livekit.SignalRequest_Offer{Offer: &livekit.SessionDescription{Type: "offer", Sdp: seedSDP, Id: 2}}},
		{Message: &livekit.SignalRequest_AddTrack{AddTrack: &livekit.AddTrackRequest{Cid: "c", Type: livekit.TrackType_VIDEO}}},
		{Message: &livekit.SignalRequest_Trickle{Trickle: &livekit.TrickleRequest{CandidateInit: `{"candidate":""}`}}},
	} {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	f.Add([]byte{0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeRequest(b)
		if err == nil && req.Message == nil {
			t.Fatal("accepted an empty request")
		}
		if o := req.GetOffer(); o != nil {
			_ = midToTrack(rewriteMsid(o.GetSdp(), publishedIDs("PA_1", func(c string) (string, bool) { return "TR_" + c, true })))
		}
		_, _, _ = relayPacket(b, "PA_1", "@u:s:D")
	})
}

// FuzzJoinRequest: the join_request parameter, compressed or not.
func FuzzJoinRequest(f *testing.F) {
	jr, _ := proto.Marshal(&livekit.JoinRequest{PublisherOffer: &livekit.SessionDescription{Type: "offer", Sdp: seedSDP}})
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(jr)
	_ = zw.Close()
	for _, w := range []*livekit.WrappedJoinRequest{
		{JoinRequest: jr}, {Compression: livekit.WrappedJoinRequest_GZIP, JoinRequest: z.Bytes()},
	} {
		b, _ := proto.Marshal(w)
		f.Add(base64.URLEncoding.EncodeToString(b))
	}
	f.Add("!!!")
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := parseJoinRequest(s); err != nil && !strings.Contains(err.Error(), "livekit:") {
			t.Fatalf("untyped error %v", err)
		}
	})
}

// TestRewriteMsid: the client's track IDs become track SIDs and the
// stream ID names the participant; the mids map to the SIDs.
func TestRewriteMsid(t *testing.T) {
	out := rewriteMsid(seedSDP, publishedIDs("PA_A", func(c string) (string, bool) { return map[string]string{"cid-1": "TR_1"}[c], c == "cid-1" }))
	for _, want := range []string{"a=msid:PA_A|TR_1 TR_1\r\n", "a=ssrc:1 msid:PA_A|TR_1 TR_1\r\n", "a=msid:PA_X|TR_Y TR_Y\r\n"} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in\n%s", want, out)
		}
	}
	m := midToTrack(out)
	if m["0"] != "TR_1" || m["1"] != "TR_Y" || len(m) != 2 {
		t.Fatalf("mid to track %v", m)
	}
}
