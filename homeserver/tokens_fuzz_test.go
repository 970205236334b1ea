package homeserver

import (
	"math"
	"testing"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// FuzzParsePosToken: an accepted pagination token is a boundary above
// math.MinInt64 (negative ones page through backfilled history; /messages
// subtracts 1 from a "to" token, which must not overflow), a sync token
// one that is not negative; "t" tokens round-trip through posToken.
func FuzzParsePosToken(f *testing.F) {
	for _, s := range []string{"t0", "t42", "s7_0_0", "s9223372036854775807", "t-1", "t-9223372036854775808", "x", "t", "s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		x, ok := parsePosToken(s)
		if !ok {
			return
		}
		if x == math.MinInt64 || s[0] == 's' && x < 0 {
			t.Fatalf("%q parsed to boundary %d", s, x)
		}
		if s[0] == 't' {
			if y, ok := parsePosToken(posToken(x)); !ok || y != x {
				t.Fatalf("%q: posToken round trip %d -> %d, %v", s, x, y, ok)
			}
		}
	})
}

// FuzzParseFilterParam: any filter the parser accepts can be applied to
// an event without panicking.
func FuzzParseFilterParam(f *testing.F) {
	for _, s := range []string{"", "{}", `{"types":["m.*"],"not_senders":["@a:b"]}`, `{"lazy_load_members":true}`, `{"types":"x"}`, "[", `{"types":["*"]}`} {
		f.Add(s, "m.room.message", "@a:b")
	}
	f.Fuzz(func(t *testing.T, raw, typ, sender string) {
		filter, err := parseFilterParam(raw)
		if err != nil {
			return
		}
		_ = filter.Allows(storage.Event{Type: typ, Sender: sender})
	})
}
