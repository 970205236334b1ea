package homeserver

import (
	"errors"
)

// maxSafeInt is 2^53-1, the canonical JSON integer bound (spec: Appendices,
// "Canonical JSON": numbers are integers in [-(2^53)+1, (2^53)-1]).
const maxSafeInt = 1<<53 - 1

// maxJSONDepth bounds nesting so a hostile body cannot exhaust the stack.
const maxJSONDepth = 64

var (
	errNotObject    = errors.New("content must be a JSON object")
	errFloat        = errors.New("numbers must be integers (canonical JSON has no floats)")
	errIntRange     = errors.New("integers must be within ±(2^53−1)")
	errTooDeep      = errors.New("JSON nested too deeply")
	errTrailingData = errors.New("trailing data after JSON value")
)

// checkCanonicalJSON checks that body is one JSON object that every parser
// reads the same: numbers are integers within the canonical range, no key
// appears twice in an object, strings are valid UTF-8 without lone
// surrogate escapes, nesting is at most maxJSONDepth deep (clientjson.go).
func checkCanonicalJSON(body []byte) error {
	return strictCanonical(body)
}
