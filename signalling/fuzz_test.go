package signalling

import (
	"encoding/json"
	"testing"
)

// The fuzz targets feed the parsers of everything a client can send the
// focus (to-device content, data-channel messages, room state): none may
// panic, and what they accept must meet their limits.

const fuzzMax = 4096

func FuzzParseInvite(f *testing.F) {
	f.Add([]byte(`{"call_id":"c","party_id":"p","conf_id":"conf","room_id":"!r:s","device_id":"D","sender_session_id":"s",` +
		`"offer":{"type":"offer","sdp":"v=0\r\n"},"sdp_stream_metadata":{"st":{"purpose":"m.usermedia","audio_muted":true}}}`))
	f.Add([]byte(`{"call_id":"c","device_id":"D","offer":"v=0"}`))
	f.Add([]byte(`{"call_id":"a\u0000b"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(` {"sdp_stream_metadata":{"":{}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		inv, err := parseInvite(b, fuzzMax)
		if err != nil {
			return
		}
		if len(b) > fuzzMax || inv.CallID == "" || inv.DeviceID == "" || inv.ConfID == "" ||
			inv.SenderSessionID == "" || inv.RoomID[0] != '!' || inv.Offer.Type != "offer" || len(inv.Metadata) > maxListLength {
			t.Fatalf("accepted %q as %+v", b, inv)
		}
		for _, id := range []string{inv.CallID, inv.DeviceID, inv.ConfID, inv.RoomID, inv.SenderSessionID, inv.PartyID} {
			if checkID("id", id, false) != nil {
				t.Fatalf("accepted bad ID %q", id)
			}
		}
		replyHeader(b, fuzzMax)
	})
}

func FuzzParseToDevice(f *testing.F) {
	f.Add([]byte(`{"call_id":"c","device_id":"D","candidates":[{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}]}`))
	f.Add([]byte(`{"call_id":"c","device_id":"D","description":{"type":"answer","sdp":"v=0\r\n"}}`))
	f.Add([]byte(`{"call_id":"c","device_id":"D","reason":"user_hangup"}`))
	f.Add([]byte(`{"call_id":"c","device_id":"D","sdp_stream_metadata":{"s":{"purpose":"m.screenshare"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := parseCandidates(b, fuzzMax); err == nil && len(c.Candidates) > maxListLength {
			t.Fatalf("%d candidates accepted", len(c.Candidates))
		}
		if n, err := parseNegotiate(b, fuzzMax); err == nil && n.Description.Type != "offer" && n.Description.Type != "answer" {
			t.Fatalf("description type %q accepted", n.Description.Type)
		}
		_, _ = parseHangup(b, fuzzMax)
		if m, err := parseMetadataChanged(b, fuzzMax); err == nil && len(m.Metadata) > maxListLength {
			t.Fatalf("%d streams accepted", len(m.Metadata))
		}
		_, _ = parseHeader(b, fuzzMax)
	})
}

func FuzzParseDataChannel(f *testing.F) {
	f.Add([]byte(`{"type":"m.call.track_subscription","content":{"subscribe":[{"stream_id":"s","track_id":"t","width":640,"height":360}],"unsubscribe":[{"track_id":"u"}]}}`))
	f.Add([]byte(`{"type":"m.call.negotiate","content":{"description":{"type":"offer","sdp":"v=0\r\n"}}}`))
	f.Add([]byte(`{"type":"m.call.ping"}`))
	f.Add([]byte(`{"type":"m.call.pong","content":null}`))
	f.Add([]byte(`{"type":"x","content":[1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseDataMessage(b, fuzzMax)
		if err != nil {
			return
		}
		if m.Type == "" || len(m.Content) == 0 || m.Content[0] != '{' {
			t.Fatalf("accepted %q as %+v", b, m)
		}
		if s, err := parseTrackSubscription(m.Content, fuzzMax); err == nil {
			for _, r := range append(s.Subscribe, s.Unsubscribe...) {
				if r.TrackID == "" || r.Width < 0 || r.Height < 0 || r.Width > maxDimension || r.Height > maxDimension {
					t.Fatalf("accepted subscription %+v", r)
				}
			}
		}
		_, _ = parseNegotiateBody(m.Content, fuzzMax)
		_, _ = parseMetadataBody(m.Content, fuzzMax)
	})
}

func FuzzMembership(f *testing.F) {
	f.Add([]byte(`{"m.calls":[{"m.call_id":"conf","m.devices":[{"device_id":"D","session_id":"s","expires_ts":9999999999999,`+
		`"m.foci.active":[{"user_id":"@switchboard:s","device_id":"SFU"}]}]}]}`), []byte(`{"m.foci":[{"user_id":"@switchboard:s","device_id":"SFU"}]}`))
	f.Add([]byte(`{"m.calls":[{"m.call_id":"conf","m.devices":[{"device_id":"D","session_id":"s"}]}],"m.expires_ts":1}`), []byte(`{"m.terminated":"gone"}`))
	f.Add([]byte(`{}`), []byte(`{"m.foci":"x"}`))
	f.Fuzz(func(t *testing.T, member, call []byte) {
		err := liveDevice(member, fuzzMax, "conf", "D", "s", 1000, "@switchboard:s", "SFU")
		if err == nil {
			// Accepted: it must really name the device and session, live.
			var m memberContent
			if json.Unmarshal(member, &m) != nil {
				t.Fatalf("accepted unparsable membership %q", member)
			}
			found := false
			for _, c := range m.Calls {
				for _, d := range c.Devices {
					exp := d.ExpiresTS
					if exp == nil {
						exp = m.ExpiresTS
					}
					if c.CallID == "conf" && d.DeviceID == "D" && d.SessionID == "s" && exp != nil && *exp > 1000 {
						found = true
					}
				}
			}
			if !found {
				t.Fatalf("accepted membership %q", member)
			}
		}
		_ = parseCall(call, fuzzMax, "@switchboard:s", "SFU")
	})
}
