package push

import (
	"encoding/json"
	"testing"
)

func TestPushRuleEvaluation(t *testing.T) {
	const me = "@bob:test.local"
	defaults := Defaults(me)
	two := eventCtx{memberCount: 2, senderPower: 0, displayName: "Bobby"}
	many := eventCtx{memberCount: 5, senderPower: 0, displayName: "Bobby"}
	mod := eventCtx{memberCount: 5, senderPower: 50, displayName: "Bobby"}
	for _, tc := range []struct {
		name      string
		ev        string
		ctx       eventCtx
		notify    bool
		highlight bool
		sound     string
	}{
		{"call invite rings", `{"type":"m.call.invite","room_id":"!r","sender":"@a:x","content":{"call_id":"c"}}`, many, true, false, "ring"},
		{"encrypted 1:1", `{"type":"m.room.encrypted","room_id":"!r","sender":"@a:x","content":{}}`, two, true, false, "default"},
		{"encrypted group", `{"type":"m.room.encrypted","room_id":"!r","sender":"@a:x","content":{}}`, many, true, false, ""},
		{"message 1:1", `{"type":"m.room.message","room_id":"!r","sender":"@a:x","content":{"body":"hi"}}`, two, true, false, "default"},
		{"message group", `{"type":"m.room.message","room_id":"!r","sender":"@a:x","content":{"body":"hi"}}`, many, true, false, ""},
		{"notice suppressed", `{"type":"m.room.message","room_id":"!r","sender":"@a:x","content":{"msgtype":"m.notice","body":"bot"}}`, two, false, false, ""},
		{"user mention", `{"type":"m.room.message","room_id":"!r","sender":"@a:x","content":{"body":"x","m.mentions":{"user_ids":["@bob:test.local"]}}}`, many, true, true, "default"},
		{"other's mention", `{"type":"m.room.message","room_id":"!r","sender":"@a:x","content":{"body":"x","m.mentions":{"user_ids":["@carol:test.local"]}}}`, many, true, false, ""},
		{"display name word", `{"type":"m.room.message","room_id":"!r","sender":"@a:x","content":{"body":"hey bobby, call me"}}`, many, true, true, "default"},
		{"display name inside a word", `{"type":"m.room.message","room_id":"!r","sender":"@a:x","content":{"body":"bobbyish"}}`, many, true, false, ""},
		{"localpart word", `{"type":"m.room.message","room_id":"!r","sender":"@a:x","content":{"body":"ask BOB"}}`, many, true, true, "default"},
		{"room mention without power", `{"type":"m.room.message","room_id":"!r","sender":"@a:x","content":{"body":"x","m.mentions":{"room":true}}}`, many, true, false, ""},
		{"room mention with power", `{"type":"m.room.message","room_id":"!r","sender":"@a:x","content":{"body":"x","m.mentions":{"room":true}}}`, mod, true, true, ""},
		{"@room legacy with power", `{"type":"m.room.message","room_id":"!r","sender":"@a:x","content":{"body":"@room look"}}`, mod, true, true, ""},
		{"edit suppressed", `{"type":"m.room.message","room_id":"!r","sender":"@a:x","content":{"body":"* hi","m.relates_to":{"rel_type":"m.replace","event_id":"$e"}}}`, two, false, false, ""},
		{"reaction silent", `{"type":"m.reaction","room_id":"!r","sender":"@a:x","content":{}}`, two, false, false, ""},
		{"invite for me", `{"type":"m.room.member","state_key":"@bob:test.local","room_id":"!r","sender":"@a:x","content":{"membership":"invite"}}`, many, true, false, "default"},
		{"someone else's join", `{"type":"m.room.member","state_key":"@c:x","room_id":"!r","sender":"@c:x","content":{"membership":"join"}}`, many, false, false, ""},
		{"call candidates", `{"type":"m.call.candidates","room_id":"!r","sender":"@a:x","content":{}}`, two, false, false, ""},
		{"tombstone", `{"type":"m.room.tombstone","state_key":"","room_id":"!r","sender":"@a:x","content":{"body":"moved"}}`, many, true, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pe, err := newRuleEvent([]byte(tc.ev))
			if err != nil {
				t.Fatal(err)
			}
			ctx := tc.ctx
			o := evaluateRules(&defaults, pe, &ctx)
			if o.notify != tc.notify || o.highlight != tc.highlight || o.sound != tc.sound {
				t.Fatalf("notify %v highlight %v sound %q; want %v %v %q (actions %s)", o.notify, o.highlight, o.sound, tc.notify, tc.highlight, tc.sound, o.actions)
			}
		})
	}
}

func TestPushConditions(t *testing.T) {
	pe, err := newRuleEvent([]byte(`{"type":"m.room.message","room_id":"!r","sender":"@a:x","content":{"body":"Hello World","n":3,"flag":false,"nul":null,"tags":["a",1,true],"dotted.key":{"x":"y"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	ec := &eventCtx{memberCount: 3, senderPower: 20, notifLevels: map[string]int64{"room": 10}}
	for _, tc := range []struct {
		cond string
		want bool
	}{
		{`{"kind":"event_match","key":"type","pattern":"m.room.*"}`, true},
		{`{"kind":"event_match","key":"type","pattern":"m.room"}`, false}, // whole value
		{`{"kind":"event_match","key":"type","pattern":"M.ROOM.MESSAG?"}`, true},
		{`{"kind":"event_match","key":"content.body","pattern":"world"}`, true}, // word in body
		{`{"kind":"event_match","key":"content.body","pattern":"wor"}`, false},
		{`{"kind":"event_match","key":"content.n","pattern":"3"}`, false}, // not a string
		{`{"kind":"event_match","key":"content.missing","pattern":"*"}`, false},
		{`{"kind":"event_match","key":"content.dotted\\.key.x","pattern":"y"}`, true},
		{`{"kind":"event_property_is","key":"content.n","value":3}`, true},
		{`{"kind":"event_property_is","key":"content.n","value":"3"}`, false},
		{`{"kind":"event_property_is","key":"content.flag","value":false}`, true},
		{`{"kind":"event_property_is","key":"content.nul","value":null}`, true},
		{`{"kind":"event_property_is","key":"content.missing","value":null}`, false},
		{`{"kind":"event_property_contains","key":"content.tags","value":1}`, true},
		{`{"kind":"event_property_contains","key":"content.tags","value":"b"}`, false},
		{`{"kind":"event_property_contains","key":"content.body","value":"Hello World"}`, false},
		{`{"kind":"room_member_count","is":"3"}`, true},
		{`{"kind":"room_member_count","is":"==3"}`, true},
		{`{"kind":"room_member_count","is":"<3"}`, false},
		{`{"kind":"room_member_count","is":">=3"}`, true},
		{`{"kind":"room_member_count","is":">2"}`, true},
		{`{"kind":"room_member_count","is":"<=2"}`, false},
		{`{"kind":"room_member_count","is":"x"}`, false},
		{`{"kind":"sender_notification_permission","key":"room"}`, true},
		{`{"kind":"sender_notification_permission","key":"other"}`, false}, // default 50
		{`{"kind":"contains_display_name"}`, false},                        // no display name
		{`{"kind":"im.unknown"}`, false},
	} {
		var c condition
		if err := json.Unmarshal([]byte(tc.cond), &c); err != nil {
			t.Fatal(err)
		}
		if got := c.holds(pe, ec); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.cond, got, tc.want)
		}
	}
}

// FuzzPushEval runs arbitrary events through the default rules and
// arbitrary rule JSON through parsing and evaluation: no panics.
func FuzzPushEval(f *testing.F) {
	f.Add([]byte(`{"type":"m.room.message","content":{"body":"hi *"}}`), []byte(`[{"kind":"event_match","key":"content.body","pattern":"*[?"}]`))
	f.Add([]byte(`{"type":"m.call.invite","content":{"m.mentions":{"user_ids":[1,null]}}}`), []byte(`[{"kind":"room_member_count","is":">="}]`))
	f.Add([]byte(`{"content":{"a\\.b":{"":[]}}}`), []byte(`[{"kind":"event_property_is","key":"content.a\\\\.b.","value":1e400}]`))
	f.Fuzz(func(t *testing.T, ev, conds []byte) {
		pe, err := newRuleEvent(ev)
		if err != nil {
			return
		}
		rs := Defaults("@bob:test.local")
		rs.Override = append([]Rule{{RuleID: "fuzz", Enabled: true, Actions: json.RawMessage(`["notify"]`), Conditions: conds}}, rs.Override...)
		ec := &eventCtx{memberCount: 2, displayName: "b"}
		_ = evaluateRules(&rs, pe, ec)
	})
}
