package federation

import (
	"testing"
)

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
