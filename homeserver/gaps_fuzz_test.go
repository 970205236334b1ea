package homeserver

import (
	"math"
	"testing"
)

// FuzzParseGapToken: an accepted gap token has a bounded, non-negative
// count and a position above math.MinInt64+1, and round-trips through
// token(); it never parses as another kind of token.
func FuzzParseGapToken(f *testing.F) {
	for _, s := range []string{"g5_0", "g5_3", "g-7_2", "g9223372036854775807_1048576", "g5_", "g_3", "g5_-1", "g5_1048577", "t5", "", "g", "g1_2_3", "g+1_2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := parseGapToken(s)
		if !ok {
			return
		}
		if !c.inGap || c.seq < 0 || c.seq > 1<<20 || c.pos <= math.MinInt64+1 {
			t.Fatalf("%q parsed to %+v", s, c)
		}
		again, ok := parseGapToken(c.token())
		if !ok || again != c {
			t.Fatalf("%q: round trip %+v -> %q -> %+v, %v", s, c, c.token(), again, ok)
		}
		if _, ok := parsePosToken(s); ok {
			t.Fatalf("%q is both a gap token and a position token", s)
		}
	})
}
