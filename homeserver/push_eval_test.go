package homeserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

func TestPushRuleEvaluation(t *testing.T) {
	const me = "@bob:test.local"
	defaults := defaultPushRules(me)
	two := pushEventCtx{memberCount: 2, senderPower: 0, displayName: "Bobby"}
	many := pushEventCtx{memberCount: 5, senderPower: 0, displayName: "Bobby"}
	mod := pushEventCtx{memberCount: 5, senderPower: 50, displayName: "Bobby"}
	for _, tc := range []struct {
		name      string
		ev        string
		ctx       pushEventCtx
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
			pe, err := newPushEvent([]byte(tc.ev))
			if err != nil {
				t.Fatal(err)
			}
			ctx := tc.ctx
			o := evaluatePushRules(&defaults, pe, &ctx)
			if o.notify != tc.notify || o.highlight != tc.highlight || o.sound != tc.sound {
				t.Fatalf("notify %v highlight %v sound %q; want %v %v %q (actions %s)", o.notify, o.highlight, o.sound, tc.notify, tc.highlight, tc.sound, o.actions)
			}
		})
	}
}

func TestPushConditions(t *testing.T) {
	pe, err := newPushEvent([]byte(`{"type":"m.room.message","room_id":"!r","sender":"@a:x","content":{"body":"Hello World","n":3,"flag":false,"nul":null,"tags":["a",1,true],"dotted.key":{"x":"y"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	ec := &pushEventCtx{memberCount: 3, senderPower: 20, notifLevels: map[string]int64{"room": 10}}
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
		var c pushCondition
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
		pe, err := newPushEvent(ev)
		if err != nil {
			return
		}
		rs := defaultPushRules("@bob:test.local")
		rs.Override = append([]pushRule{{RuleID: "fuzz", Enabled: true, Actions: json.RawMessage(`["notify"]`), Conditions: conds}}, rs.Override...)
		ec := &pushEventCtx{memberCount: 2, displayName: "b"}
		_ = evaluatePushRules(&rs, pe, ec)
	})
}

// FuzzParseSetPusher: any body gives a pusher or a Matrix error.
func FuzzParseSetPusher(f *testing.F) {
	f.Add([]byte(`{"kind":"http","app_id":"a","pushkey":"k","app_display_name":"x","device_display_name":"y","lang":"en","data":{"url":"https://p/_matrix/push/v1/notify"}}`))
	f.Add([]byte(`{"kind":null,"app_id":"a","pushkey":"k"}`))
	f.Add([]byte(`{"kind":"http","data":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, del, err := parseSetPusher(body)
		if err != nil {
			if _, ok := err.(*MatrixError); !ok {
				t.Fatalf("non-Matrix error %T", err)
			}
			return
		}
		if !del {
			var pd pusherData
			_ = json.Unmarshal(req.Data, &pd)
			if u, err := url.Parse(pd.URL); err != nil || u.Path != "/_matrix/push/v1/notify" {
				t.Fatalf("accepted url %q", pd.URL)
			}
		}
	})
}

// BenchmarkPushCallInviteLatency measures the time from sending an
// m.call.invite (the PUT's start) to its arrival at a push gateway on
// loopback, and reports p50 and p99 in milliseconds.
func BenchmarkPushCallInviteLatency(b *testing.B) {
	ts := newTestServer(b, storagetest.Backend{Name: "sqlite"}, pushOpts)
	gw := newPushGateway(b)
	ctx := context.Background()
	alice, bob := ts.user(b, "alice"), ts.user(b, "bob")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}, IsDirect: true})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"kind": "http", "app_id": "bench", "pushkey": "bob", "app_display_name": "B",
		"device_display_name": "P", "lang": "en", "data": map[string]any{"url": gw.url()}})
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/_matrix/client/v3/pushers/set", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bob.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("set pusher: %v %v", err, resp)
	}
	resp.Body.Close()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		sent, err := alice.SendMessageEvent(ctx, room.RoomID, event.CallInvite, callInvite(fmt.Sprint("bench-", i)))
		if err != nil {
			b.Fatal(err)
		}
		n := gw.waitEvent(b, sent.EventID, "")
		lat = append(lat, n.At.Sub(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[(len(lat)*99)/100]), "p99-ms")
}
