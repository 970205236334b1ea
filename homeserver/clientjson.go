package homeserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// One strict JSON validator for everything that can become part of an
// event. A body that two parsers could read differently must never be
// signed: a duplicate key ("body":"a","body":"b") is read as "a" by one
// server and "b" (or refused) by another, and the room splits. So event
// content is refused, with 400 M_BAD_JSON, unless it is one JSON object
// that every parser reads the same (spec: Appendices, "Canonical JSON";
// RFC 8259 §4 leaves duplicate names undefined, RFC 7493 (I-JSON) §2.3
// forbids them, §2.1 forbids lone surrogates and invalid UTF-8):
//   - no key twice in one object (compared after unescaping);
//   - strings are valid UTF-8 and \u escapes of surrogates come in pairs;
//   - numbers are integers within ±(2^53−1), no fraction or exponent;
//   - nesting at most maxJSONDepth deep.
//
// checkCanonicalJSON applies all of it; checkClientJSON, used by readJSON
// for every other request body, applies all but the number rules (request
// fields that are not event content may be floats).

var (
	errDuplicateKey  = errors.New("not canonical JSON: duplicate key in one object")
	errLoneSurrogate = errors.New("not canonical JSON: a \\u escape is an unpaired UTF-16 surrogate")
	errInvalidUTF8   = errors.New("not canonical JSON: strings must be valid UTF-8")
	errJSONSyntax    = errors.New("invalid JSON")
)

// checkClientJSON checks a request body with the strict rules except the
// number rules: no duplicate keys, no lone surrogates, valid UTF-8, depth.
func checkClientJSON(body []byte) error {
	sc := jsonScanner{b: body}
	return sc.document(false)
}

// strictCanonical is the body of checkCanonicalJSON (canonical.go).
func strictCanonical(body []byte) error {
	sc := jsonScanner{b: body, numbers: true}
	return sc.document(true)
}

// readEventJSON is readJSON for request bodies that become event content
// (membership reasons, profile fields, createRoom's parts): the body must
// pass checkCanonicalJSON, else 400 M_BAD_JSON (M_NOT_JSON when it is not
// JSON at all).
func readEventJSON(c echo.Context, v any) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		return errNotJSON("Content not JSON.")
	}
	if err := checkCanonicalJSON(body); err != nil {
		return errBadJSON("%v", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errBadJSON("%v", err)
	}
	return nil
}

// jsonScanner walks a JSON text once, by hand, so that it sees what
// encoding/json hides: raw escapes (lone surrogates become U+FFFD there)
// and repeated keys (the last one wins there).
type jsonScanner struct {
	b       []byte
	i       int
	depth   int
	numbers bool // apply canonical JSON's number rules
}

func (s *jsonScanner) syntax(what string) error {
	return fmt.Errorf("%w: %s at offset %d", errJSONSyntax, what, s.i)
}

// document scans one value and checks nothing but whitespace follows.
func (s *jsonScanner) document(wantObject bool) error {
	s.ws()
	if wantObject && (s.i >= len(s.b) || s.b[s.i] != '{') {
		if s.i < len(s.b) && (s.b[s.i] == '[' || s.b[s.i] == '"' || s.b[s.i] == '-' || s.b[s.i] >= '0' && s.b[s.i] <= '9' ||
			s.b[s.i] == 't' || s.b[s.i] == 'f' || s.b[s.i] == 'n') {
			return errNotObject
		}
		return s.syntax("expected an object")
	}
	if err := s.value(); err != nil {
		return err
	}
	s.ws()
	if s.i != len(s.b) {
		return errTrailingData
	}
	return nil
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScanner) value() error {
	s.ws()
	if s.i >= len(s.b) {
		return s.syntax("unexpected end")
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		_, err := s.str(false)
		return err
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return s.syntax("unexpected character")
}

func (s *jsonScanner) literal(word string) error {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return s.syntax("bad literal")
	}
	s.i += len(word)
	return nil
}

func (s *jsonScanner) enter() error {
	s.depth++
	if s.depth > maxJSONDepth {
		return errTooDeep
	}
	s.i++
	return nil
}

func (s *jsonScanner) object() error {
	if err := s.enter(); err != nil {
		return err
	}
	var seen map[string]struct{}
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		s.depth--
		return nil
	}
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return s.syntax("expected a key")
		}
		key, err := s.str(true)
		if err != nil {
			return err
		}
		if seen == nil {
			seen = make(map[string]struct{})
		}
		if _, dup := seen[key]; dup {
			return fmt.Errorf("%w: %q", errDuplicateKey, key)
		}
		seen[key] = struct{}{}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return s.syntax("expected ':'")
		}
		s.i++
		if err := s.value(); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return s.syntax("unexpected end")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return nil
		default:
			return s.syntax("expected ',' or '}'")
		}
	}
}

func (s *jsonScanner) array() error {
	if err := s.enter(); err != nil {
		return err
	}
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		s.depth--
		return nil
	}
	for {
		if err := s.value(); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return s.syntax("unexpected end")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return nil
		default:
			return s.syntax("expected ',' or ']'")
		}
	}
}

// str scans a string starting at its opening quote; with decode it
// returns the unescaped value (for comparing keys).
func (s *jsonScanner) str(decode bool) (string, error) {
	s.i++ // opening quote
	start := s.i
	var sb *strings.Builder
	for {
		if s.i >= len(s.b) {
			return "", s.syntax("unterminated string")
		}
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			if sb != nil {
				return sb.String(), nil
			}
			if decode {
				return string(s.b[start : s.i-1]), nil
			}
			return "", nil
		case c < 0x20:
			return "", s.syntax("control character in string")
		case c == '\\':
			if decode && sb == nil {
				sb = &strings.Builder{}
				sb.Write(s.b[start:s.i])
			}
			r, err := s.escape()
			if err != nil {
				return "", err
			}
			if sb != nil {
				sb.WriteRune(r)
			}
		case c < utf8.RuneSelf:
			if sb != nil {
				sb.WriteByte(c)
			}
			s.i++
		default:
			// utf8.DecodeRune also refuses encoded surrogates and overlong forms.
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size <= 1 {
				return "", errInvalidUTF8
			}
			if sb != nil {
				sb.WriteRune(r)
			}
			s.i += size
		}
	}
}

// escape reads one backslash escape and returns the rune it stands for;
// a \u escape of a high surrogate must be followed by one of a low one.
func (s *jsonScanner) escape() (rune, error) {
	if s.i+1 >= len(s.b) {
		return 0, s.syntax("unterminated escape")
	}
	c := s.b[s.i+1]
	s.i += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
	default:
		return 0, s.syntax("bad escape")
	}
	hi, err := s.hex4()
	if err != nil {
		return 0, err
	}
	switch {
	case hi >= 0xDC00 && hi <= 0xDFFF:
		return 0, errLoneSurrogate
	case hi < 0xD800 || hi > 0xDBFF:
		return hi, nil
	}
	if s.i+1 >= len(s.b) || s.b[s.i] != '\\' || s.b[s.i+1] != 'u' {
		return 0, errLoneSurrogate
	}
	s.i += 2
	lo, err := s.hex4()
	if err != nil {
		return 0, err
	}
	if lo < 0xDC00 || lo > 0xDFFF {
		return 0, errLoneSurrogate
	}
	return 0x10000 + (hi-0xD800)<<10 + (lo - 0xDC00), nil
}

func (s *jsonScanner) hex4() (rune, error) {
	if len(s.b)-s.i < 4 {
		return 0, s.syntax("short \\u escape")
	}
	var r rune
	for _, c := range s.b[s.i : s.i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			r |= rune(c-'A') + 10
		default:
			return 0, s.syntax("bad \\u escape")
		}
	}
	s.i += 4
	return r, nil
}

// number scans a JSON number; with the number rules it must be an integer
// within the canonical range.
func (s *jsonScanner) number() error {
	start := s.i
	if s.b[s.i] == '-' {
		s.i++
	}
	digits := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	if s.i == digits || (s.b[digits] == '0' && s.i-digits > 1) {
		return s.syntax("bad number")
	}
	fraction := false
	if s.i < len(s.b) && s.b[s.i] == '.' {
		fraction = true
		s.i++
		d := s.i
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
		if s.i == d {
			return s.syntax("bad number")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		fraction = true
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		d := s.i
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
		if s.i == d {
			return s.syntax("bad number")
		}
	}
	if !s.numbers {
		return nil
	}
	if fraction {
		return errFloat
	}
	n, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	if err != nil || n > maxSafeInt || n < -maxSafeInt {
		return errIntRange
	}
	return nil
}
