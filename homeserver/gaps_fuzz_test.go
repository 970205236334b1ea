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

// FuzzPlainText: a remote server's message reaches our client as one line
// of at most limit+1 runes with no control characters.
func FuzzPlainText(f *testing.F) {
	for _, s := range []string{"", "You are banned", "line\nbreak\ttab\x00nul\x7f", "ünïcödé ☎", string([]byte{0xff, 0xfe})} {
		f.Add(s, 10)
	}
	f.Fuzz(func(t *testing.T, s string, limit int) {
		if limit < 0 || limit > 1000 {
			return
		}
		out := plainText(s, limit)
		n := 0
		for _, r := range out {
			n++
			if r < 0x20 || r == 0x7f {
				t.Fatalf("plainText(%q) = %q keeps a control character", s, out)
			}
		}
		if n > limit+1 {
			t.Fatalf("plainText(%q, %d) is %d runes", s, limit, n)
		}
	})
}
