package federation

import (
	"testing"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
)

// FuzzUserEDUs: the device list, signing key and presence EDU parsers
// never panic, and what they accept is about a user of the origin.
func FuzzUserEDUs(f *testing.F) {
	for _, s := range []string{
		`{"user_id":"@a:o","device_id":"D","stream_id":1,"prev_id":[],"keys":{"k":1}}`,
		`{"user_id":"@a:x","device_id":"D"}`, `{"user_id":"@a:o","device_id":"","keys":"s"}`,
		`{"push":[{"user_id":"@a:o","presence":"online","last_active_ago":3,"status_msg":"s"}]}`,
		`{"push":[{"user_id":"@a:o","presence":"away"},{"user_id":"@b:x","presence":"offline"},7]}`,
		`{"push":null}`, `[]`, `{"user_id":5}`, `{`,
	} {
		f.Add([]byte(s))
	}
	const origin = "o"
	f.Fuzz(func(t *testing.T, content []byte) {
		if u, err := parseDeviceListUpdate(origin, content); err == nil {
			if rooms.ServerOf(u.UserID) != origin || u.DeviceID == "" {
				t.Fatalf("device list update accepted: %+v", u)
			}
		}
		if u, err := parseSigningKeyUpdate(origin, content); err == nil && rooms.ServerOf(u) != origin {
			t.Fatalf("signing key update accepted for %q", u)
		}
		pushes, _ := parsePresenceEDU(origin, content)
		for _, p := range pushes {
			if rooms.ServerOf(p.UserID) != origin || !validPresence(p.Presence) || p.LastActiveAgo < 0 {
				t.Fatalf("presence push accepted: %+v", p)
			}
		}
	})
}
