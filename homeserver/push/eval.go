package push

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Push rule evaluation (spec: Client-Server API, "Push Rules": rules are
// tried kind by kind — override, content, room, sender, underride — and
// the first enabled rule whose conditions all hold gives the actions;
// "Conditions" lists the condition kinds). Unknown condition kinds never
// hold, so a rule using one never matches (spec: "Clients and servers
// should ignore rules with unknown condition kinds").

// eventCtx is what conditions need besides the event itself.
type eventCtx struct {
	// memberCount is the number of joined members of the room.
	memberCount int
	// senderPower is the sender's power level in the room.
	senderPower int64
	// notifLevels are the power levels' "notifications" levels (room: 50
	// unless set).
	notifLevels map[string]int64
	// displayName is the user's display name in the room, "" if none.
	displayName string
	// globs caches compiled patterns (may be nil).
	globs *globCache
}

// ruleEvent is an event decoded once for evaluation against many users'
// rules.
type ruleEvent struct {
	obj map[string]any
	// body is content.body when it is a string.
	body string
}

func newRuleEvent(js []byte) (*ruleEvent, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	pe := &ruleEvent{obj: obj}
	if c, ok := obj["content"].(map[string]any); ok {
		pe.body, _ = c["body"].(string)
	}
	return pe, nil
}

// splitKey splits a dotted key; "\." is a literal dot and "\\" a
// backslash (spec: "Conditions", event_match key escaping, MSC3873).
func splitKey(key string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '\\' && i+1 < len(key) && (key[i+1] == '.' || key[i+1] == '\\'):
			cur.WriteByte(key[i+1])
			i++
		case c == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, cur.String())
}

// lookup returns the value at a dotted key, ok false when absent.
func (pe *ruleEvent) lookup(key string) (any, bool) {
	var v any = pe.obj
	for _, p := range splitKey(key) {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[p]; !ok {
			return nil, false
		}
	}
	return v, true
}

// globCache keeps compiled glob patterns; rule sets repeat the same few.
// Patterns come from users, so it is emptied when full. A nil cache
// compiles every time.
type globCache struct {
	mu sync.Mutex // guards m
	m  map[string]*regexp.Regexp
}

const globCacheSize = 1024

// globRegexp compiles a push rule glob (* any run, ? one character,
// case-insensitive). words anchors it at word boundaries instead of the
// whole value (content.body matching, spec: "event_match").
func (gc *globCache) globRegexp(pattern string, words bool) *regexp.Regexp {
	key := strconv.FormatBool(words) + pattern
	if gc != nil {
		gc.mu.Lock()
		re, ok := gc.m[key]
		gc.mu.Unlock()
		if ok {
			return re
		}
	}
	var b strings.Builder
	b.WriteString("(?is)")
	if words {
		b.WriteString(`(?:^|[^\p{L}\p{N}_])`)
	} else {
		b.WriteString("^")
	}
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*?")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	if words {
		b.WriteString(`(?:[^\p{L}\p{N}_]|$)`)
	} else {
		b.WriteString("$")
	}
	re := regexp.MustCompile(b.String()) // every piece is quoted or fixed
	if gc != nil {
		gc.mu.Lock()
		if gc.m == nil || len(gc.m) >= globCacheSize {
			gc.m = make(map[string]*regexp.Regexp)
		}
		gc.m[key] = re
		gc.mu.Unlock()
	}
	return re
}

// containsWords reports whether needle occurs in text delimited by word
// boundaries, case-insensitively (contains_display_name).
func containsWords(text, needle string) bool {
	if needle == "" {
		return false
	}
	lt, ln := strings.ToLower(text), strings.ToLower(needle)
	for off := 0; ; {
		i := strings.Index(lt[off:], ln)
		if i < 0 {
			return false
		}
		i += off
		end := i + len(ln)
		before, _ := utf8.DecodeLastRuneInString(lt[:i])
		after, _ := utf8.DecodeRuneInString(lt[end:])
		if (i == 0 || !isWordRune(before)) && (end == len(lt) || !isWordRune(after)) {
			return true
		}
		off = i + 1
	}
}

func isWordRune(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) }

// condition is one condition of a rule.
type condition struct {
	Kind    string          `json:"kind"`
	Key     string          `json:"key"`
	Pattern *string         `json:"pattern"`
	Value   json.RawMessage `json:"value"`
	Is      string          `json:"is"`
}

// holds evaluates one condition.
func (c condition) holds(pe *ruleEvent, ec *eventCtx) bool {
	switch c.Kind {
	case "event_match":
		if c.Pattern == nil {
			return false
		}
		v, ok := pe.lookup(c.Key)
		s, isStr := v.(string)
		if !ok || !isStr {
			return false
		}
		return ec.globs.globRegexp(*c.Pattern, c.Key == "content.body").MatchString(s)
	case "event_property_is":
		v, ok := pe.lookup(c.Key)
		return ok && scalarEqual(v, c.Value)
	case "event_property_contains":
		v, ok := pe.lookup(c.Key)
		arr, isArr := v.([]any)
		if !ok || !isArr {
			return false
		}
		for _, el := range arr {
			if scalarEqual(el, c.Value) {
				return true
			}
		}
		return false
	case "room_member_count":
		return memberCountHolds(c.Is, ec.memberCount)
	case "sender_notification_permission":
		need, ok := ec.notifLevels[c.Key]
		if !ok {
			need = 50
		}
		return ec.senderPower >= need
	case "contains_display_name":
		return containsWords(pe.body, ec.displayName)
	}
	return false
}

// scalarEqual compares a decoded event value with a condition's JSON
// value; only strings, integers, booleans and null compare (spec:
// event_property_is).
func scalarEqual(v any, want json.RawMessage) bool {
	var w any
	dec := json.NewDecoder(bytes.NewReader(want))
	dec.UseNumber()
	if len(want) == 0 || dec.Decode(&w) != nil {
		return false
	}
	switch a := v.(type) {
	case string:
		b, ok := w.(string)
		return ok && a == b
	case bool:
		b, ok := w.(bool)
		return ok && a == b
	case nil:
		return w == nil
	case json.Number:
		b, ok := w.(json.Number)
		if !ok {
			return false
		}
		x, err1 := a.Int64()
		y, err2 := b.Int64()
		return err1 == nil && err2 == nil && x == y
	}
	return false
}

// memberCountHolds evaluates room_member_count's "is": an integer with an
// optional ==, <, >, <= or >= prefix.
func memberCountHolds(is string, n int) bool {
	op := "=="
	for _, p := range []string{"==", "<=", ">=", "<", ">"} {
		if strings.HasPrefix(is, p) {
			op, is = p, is[len(p):]
			break
		}
	}
	want, err := strconv.Atoi(is)
	if err != nil {
		return false
	}
	switch op {
	case "<":
		return n < want
	case ">":
		return n > want
	case "<=":
		return n <= want
	case ">=":
		return n >= want
	}
	return n == want
}

// outcome is what the first matching rule decided.
type outcome struct {
	notify    bool
	highlight bool
	sound     string
	// actions are the matching rule's actions, for /notifications.
	actions json.RawMessage
	// tweaks are the set_tweak actions, for the gateway's devices.tweaks.
	tweaks map[string]any
}

// evaluateRules runs a user's rules against an event (spec: "Push
// Rules", order of kinds and rules). ruleRoom and sender are the event's
// room and sender for room and sender rules.
func evaluateRules(rs *Ruleset, pe *ruleEvent, ec *eventCtx) outcome {
	roomID, _ := pe.obj["room_id"].(string)
	sender, _ := pe.obj["sender"].(string)
	for _, kind := range Kinds {
		for _, r := range *rs.Kind(kind) {
			if !r.Enabled || !ruleMatches(kind, r, pe, ec, roomID, sender) {
				continue
			}
			return outcomeOf(r.Actions)
		}
	}
	return outcome{}
}

func ruleMatches(kind string, r Rule, pe *ruleEvent, ec *eventCtx, roomID, sender string) bool {
	switch kind {
	case "room":
		return r.RuleID == roomID
	case "sender":
		return r.RuleID == sender
	case "content":
		return r.Pattern != nil && pe.body != "" && ec.globs.globRegexp(*r.Pattern, true).MatchString(pe.body)
	}
	var conds []condition
	if len(r.Conditions) > 0 {
		if err := json.Unmarshal(r.Conditions, &conds); err != nil {
			return false
		}
	}
	for _, c := range conds {
		if !c.holds(pe, ec) {
			return false
		}
	}
	return true
}

// outcomeOf reads a rule's actions (spec: "Actions": notify, set_tweak
// sound and highlight; dont_notify, coalesce and an empty list notify
// nothing).
func outcomeOf(raw json.RawMessage) outcome {
	out := outcome{actions: raw, tweaks: map[string]any{}}
	var actions []json.RawMessage
	if json.Unmarshal(raw, &actions) != nil {
		return outcome{}
	}
	for _, a := range actions {
		var name string
		if json.Unmarshal(a, &name) == nil {
			if name == "notify" {
				out.notify = true
			}
			continue
		}
		var tw struct {
			SetTweak string          `json:"set_tweak"`
			Value    json.RawMessage `json:"value"`
		}
		if json.Unmarshal(a, &tw) != nil || tw.SetTweak == "" {
			continue
		}
		var v any = true
		if len(tw.Value) > 0 {
			_ = json.Unmarshal(tw.Value, &v)
		}
		out.tweaks[tw.SetTweak] = v
		switch tw.SetTweak {
		case "highlight":
			b, ok := v.(bool)
			out.highlight = !ok || b
		case "sound":
			out.sound, _ = v.(string)
		}
	}
	if !out.notify {
		return outcome{}
	}
	if !out.highlight {
		delete(out.tweaks, "highlight")
	}
	return out
}
