package homeserver

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestCheckCanonicalJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want error // nil: accepted; errAny: any error
	}{
		{"empty object", `{}`, nil},
		{"nested ints", `{"a":[1,-2,{"b":9007199254740991}],"c":-9007199254740991}`, nil},
		{"float", `{"a":1.5}`, errFloat},
		{"exponent", `{"a":1e3}`, errFloat},
		{"too big", `{"a":9007199254740992}`, errIntRange},
		{"too small", `{"a":-9007199254740992}`, errIntRange},
		{"huge", `{"a":123456789012345678901234567890}`, errIntRange},
		{"nested float", `{"a":{"b":[0.1]}}`, errFloat},
		{"array top", `[1]`, errNotObject},
		{"string top", `"x"`, errNotObject},
		{"trailing", `{}{}`, errTrailingData},
		{"broken", `{"a":`, errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkCanonicalJSON([]byte(tc.body))
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want == errAny && err == nil:
				t.Fatalf("accepted")
			case tc.want != nil && tc.want != errAny && !errors.Is(err, tc.want):
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	deep := ""
	for i := 0; i < 100; i++ {
		deep += `{"a":`
	}
	deep += "1"
	for i := 0; i < 100; i++ {
		deep += "}"
	}
	if err := checkCanonicalJSON([]byte(deep)); !errors.Is(err, errTooDeep) {
		t.Fatalf("deep: got %v", err)
	}
}

var errAny = errors.New("any")

func FuzzCheckCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":[1,2,{"b":null}]}`, `{"a":1.0}`, `[]`, `{"a":"\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// Must never panic; anything it accepts must be valid JSON.
		if checkCanonicalJSON(b) == nil && !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
	})
}
