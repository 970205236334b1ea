package cluster

import (
	"errors"
	"slices"
	"testing"
)

func TestDecodeWake(t *testing.T) {
	good := []struct {
		name string
		in   string
		want wake
	}{
		{"keys", `{"n":"a","p":5,"k":["!r:x","@u:x"]}`, wake{Node: "a", Pos: 5, Keys: []string{"!r:x", "@u:x"}}},
		{"typing", `{"n":"a","k":["!r:x"]}`, wake{Node: "a", Keys: []string{"!r:x"}}},
		{"link", `{"n":"a","l":[4,9]}`, wake{Node: "a", Link: []int64{4, 9}}},
		{"typing change", `{"n":"a","t":{"r":"!r:x","u":"@u:x","y":true,"ms":30000,"s":7}}`, wake{Node: "a", Typing: &typingChange{"!r:x", "@u:x", true, 30000, 7}}},
	}
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			w, err := decodeWake([]byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if w.Node != c.want.Node || w.Pos != c.want.Pos || !slices.Equal(w.Keys, c.want.Keys) || !slices.Equal(w.Link, c.want.Link) ||
				(w.Typing == nil) != (c.want.Typing == nil) || (w.Typing != nil && *w.Typing != *c.want.Typing) {
				t.Fatalf("got %+v, want %+v", w, c.want)
			}
			b, err := encodeWake(w)
			if err != nil {
				t.Fatal(err)
			}
			if again, err := decodeWake(b); err != nil || again.Pos != w.Pos {
				t.Fatalf("round trip: %+v %v", again, err)
			}
		})
	}
	bad := map[string]string{
		"not json":       `{"n":`,
		"no node":        `{"p":3,"k":["!r"]}`,
		"negative pos":   `{"n":"a","p":-1,"k":["!r"]}`,
		"empty":          `{"n":"a"}`,
		"short link":     `{"n":"a","l":[3]}`,
		"backward link":  `{"n":"a","l":[9,4]}`,
		"empty key":      `{"n":"a","p":1,"k":[""]}`,
		"array":          `[1,2]`,
		"pos string":     `{"n":"a","p":"5"}`,
		"typing no room": `{"n":"a","t":{"u":"@u:x","s":1}}`,
		"typing timeout": `{"n":"a","t":{"r":"!r","u":"@u:x","ms":-5,"s":1}}`,
		"typing forever": `{"n":"a","t":{"r":"!r","u":"@u:x","ms":99999999999,"s":1}}`,
	}
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeWake([]byte(in)); !errors.Is(err, ErrBadMessage) {
				t.Fatalf("decodeWake(%s) = %v, want ErrBadMessage", in, err)
			}
		})
	}
}

func FuzzDecodeWake(f *testing.F) {
	for _, s := range []string{`{"n":"a","p":5,"k":["!r:x","@u:x"]}`, `{"n":"a","l":[4,9]}`, `{"n":"a","k":["x"]}`, `{}`, `null`, `{"n":"a","l":[1,2,3]}`, `{"n":"a","t":{"r":"!r:x","u":"@u:x","y":true,"ms":30000,"s":7}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := decodeWake(b)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("error %v is not ErrBadMessage", err)
			}
			return
		}
		// What is accepted survives a round trip unchanged.
		out, err := encodeWake(w)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeWake(out)
		if err != nil || again.Node != w.Node || again.Pos != w.Pos || !slices.Equal(again.Keys, w.Keys) || !slices.Equal(again.Link, w.Link) ||
			(again.Typing == nil) != (w.Typing == nil) || (w.Typing != nil && *again.Typing != *w.Typing) {
			t.Fatalf("round trip of %q: %+v %v", b, again, err)
		}
	})
}
