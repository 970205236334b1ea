package homeserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
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

// checkCanonicalJSON checks that body is one JSON object whose numbers are
// all integers within the canonical range, nested at most maxJSONDepth deep.
func checkCanonicalJSON(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errNotObject
	}
	depth := 1
	for depth > 0 {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("invalid JSON: %w", err)
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				depth++
				if depth > maxJSONDepth {
					return errTooDeep
				}
			default:
				depth--
			}
		case json.Number:
			if err := checkCanonicalNumber(string(t)); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return errTrailingData
	}
	return nil
}

func checkCanonicalNumber(s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '.' || c == 'e' || c == 'E' {
			return errFloat
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxSafeInt || n < -maxSafeInt {
		return errIntRange
	}
	return nil
}
