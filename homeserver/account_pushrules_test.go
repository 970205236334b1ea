package homeserver

import (
	"encoding/json"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/pushrules"

	"github.com/switchboard-chat/switchboard/homeserver/push"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

func ruleIDs(rules pushrules.PushRuleArray) []string {
	out := make([]string, 0, len(rules))
	for _, r := range rules {
		out = append(out, r.RuleID)
	}
	return out
}

func TestDefaultPushRules(t *testing.T) {
	rs := push.Defaults(`@al"ice:test.local`)
	got := map[string][]string{}
	for _, k := range push.Kinds {
		for _, r := range *rs.Kind(k) {
			got[k] = append(got[k], r.RuleID)
			if !r.Default || r.Actions == nil {
				t.Errorf("%s: default %v actions %s", r.RuleID, r.Default, r.Actions)
			}
			if (k == "override" || k == "underride") && r.Conditions == nil {
				t.Errorf("%s has no conditions", r.RuleID)
			}
		}
	}
	want := map[string][]string{
		"override": {".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
			".m.rule.is_user_mention", ".m.rule.contains_display_name", ".m.rule.is_room_mention", ".m.rule.roomnotif",
			".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl", ".m.rule.suppress_edits"},
		"content":   {".m.rule.contains_user_name"},
		"underride": {".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"},
	}
	for k, ids := range want {
		if len(got[k]) != len(ids) {
			t.Fatalf("%s rules = %v, want %v", k, got[k], ids)
		}
		for i := range ids {
			if got[k][i] != ids[i] {
				t.Fatalf("%s rules = %v, want %v", k, got[k], ids)
			}
		}
	}
	// The user ID is substituted as a JSON string, quotes escaped.
	var conds []map[string]any
	_ = json.Unmarshal(rs.Override[2].Conditions, &conds)
	if conds[2]["pattern"] != `@al"ice:test.local` || *rs.Content[0].Pattern != `al"ice` {
		t.Fatalf("user substitution: %v / %q", conds, *rs.Content[0].Pattern)
	}
}

func TestPushRules(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		tok := string(alice.AccessToken)

		rs, err := alice.GetPushRules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs.Override) != 12 || rs.Override[0].RuleID != ".m.rule.master" || rs.Override[0].Enabled ||
			len(rs.Content) != 1 || rs.Content[0].Pattern != "alice" || len(rs.Underride) != 5 {
			t.Fatalf("default rules: override %v content %v underride %v", ruleIDs(rs.Override), rs.Content, ruleIDs(rs.Underride))
		}
		// The defaults work as rules: a mention of Alice highlights, a
		// plain message in a big room notifies without highlight.
		mention := &event.Event{Type: event.EventMessage, Sender: bob.UserID, Content: event.Content{Raw: map[string]any{
			"msgtype": "m.text", "body": "hi", "m.mentions": map[string]any{"user_ids": []any{string(alice.UserID)}}}}}
		if r := rs.Override.GetMatchingRule(fakeRoom{members: 5}, mention); r == nil || r.RuleID != ".m.rule.is_user_mention" {
			t.Fatalf("mention matched %+v", r)
		}
		r := ts.do(t, http.MethodGet, "/_matrix/client/v3/pushrules/", tok, nil)
		wantStatus(t, r, http.StatusOK, "")
		if _, ok := r.Body["global"]; !ok {
			t.Fatalf("GET /pushrules/ without global: %s", r.Raw)
		}

		put := func(kind pushrules.PushRuleType, id string, req *mautrix.ReqPutPushRule) error {
			return alice.PutPushRule(ctx, "global", kind, id, req)
		}
		notify := []*pushrules.PushAction{{Action: pushrules.ActionNotify}}
		cond := []*pushrules.PushCondition{{Kind: pushrules.KindEventMatch, Key: "content.body", Pattern: "lunch"}}
		if err := put(pushrules.OverrideRule, "lunch", &mautrix.ReqPutPushRule{Actions: notify, Conditions: cond}); err != nil {
			t.Fatal(err)
		}
		if err := put(pushrules.OverrideRule, "first", &mautrix.ReqPutPushRule{Actions: notify, Before: "lunch"}); err != nil {
			t.Fatal(err)
		}
		if err := put(pushrules.OverrideRule, "last", &mautrix.ReqPutPushRule{Actions: notify, After: "lunch"}); err != nil {
			t.Fatal(err)
		}
		if err := put(pushrules.RoomRule, "!room:test.local", &mautrix.ReqPutPushRule{Actions: []*pushrules.PushAction{}}); err != nil {
			t.Fatal(err)
		}
		if err := put(pushrules.SenderRule, "@bob:test.local", &mautrix.ReqPutPushRule{Actions: notify}); err != nil {
			t.Fatal(err)
		}
		if err := put(pushrules.ContentRule, "cake", &mautrix.ReqPutPushRule{Actions: notify, Pattern: "cake"}); err != nil {
			t.Fatal(err)
		}
		rs, err = alice.GetPushRules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids := ruleIDs(rs.Override)
		if len(ids) != 15 || ids[0] != ".m.rule.master" || ids[1] != "first" || ids[2] != "lunch" || ids[3] != "last" || ids[4] != ".m.rule.suppress_notices" {
			t.Fatalf("override order = %v", ids)
		}
		if rs.Room.Map["!room:test.local"] == nil || rs.Sender.Map["@bob:test.local"] == nil || rs.Content[0].RuleID != "cake" {
			t.Fatalf("room %v sender %v content %v", rs.Room, rs.Sender, ruleIDs(rs.Content))
		}
		got, err := alice.GetPushRule(ctx, "global", pushrules.OverrideRule, "lunch")
		if err != nil || got.Default || !got.Enabled || len(got.Conditions) != 1 || got.Conditions[0].Pattern != "lunch" {
			t.Fatalf("lunch rule = %+v, %v", got, err)
		}
		// Replacing a rule keeps its place.
		if err := put(pushrules.OverrideRule, "lunch", &mautrix.ReqPutPushRule{Actions: []*pushrules.PushAction{}, Conditions: cond}); err != nil {
			t.Fatal(err)
		}
		if rs, _ = alice.GetPushRules(ctx); ruleIDs(rs.Override)[2] != "lunch" || len(rs.Override[2].Actions) != 0 {
			t.Fatalf("replaced rule moved or kept its actions: %v", ruleIDs(rs.Override))
		}

		// Defaults can be switched and given other actions, not deleted.
		if err := alice.SetPushRuleEnabled(ctx, "global", pushrules.OverrideRule, ".m.rule.master", true); err != nil {
			t.Fatal(err)
		}
		if err := alice.PutPushRuleActions(ctx, "global", pushrules.UnderrideRule, ".m.rule.message", []*pushrules.PushAction{{Action: pushrules.ActionDontNotify}}); err != nil {
			t.Fatal(err)
		}
		base := "/_matrix/client/v3/pushrules/global/"
		if r := ts.do(t, http.MethodGet, base+"override/.m.rule.master/enabled", tok, nil); r.Body["enabled"] != true {
			t.Fatalf("master enabled = %s", r.Raw)
		}
		if r := ts.do(t, http.MethodGet, base+"underride/.m.rule.message/actions", tok, nil); string(r.Raw) != `{"actions":["dont_notify"]}`+"\n" {
			t.Fatalf("message actions = %s", r.Raw)
		}
		wantStatus(t, ts.do(t, http.MethodDelete, base+"override/.m.rule.master", tok, nil), http.StatusBadRequest, "M_INVALID_PARAM")
		if err := alice.DeletePushRule(ctx, "global", pushrules.OverrideRule, "first"); err != nil {
			t.Fatal(err)
		}
		_, err = alice.GetPushRule(ctx, "global", pushrules.OverrideRule, "first")
		assertErrCode(t, err, http.StatusNotFound, "M_NOT_FOUND")
		assertErrCode(t, alice.DeletePushRule(ctx, "global", pushrules.OverrideRule, "first"), http.StatusNotFound, "M_NOT_FOUND")

		// Bad input.
		act := map[string]any{"actions": []string{"notify"}}
		for _, c := range []struct {
			name, method, path string
			body               any
			status             int
			code               string
		}{
			{"reserved id", http.MethodPut, base + "override/.m.rule.mine", act, 400, "M_INVALID_PARAM"},
			{"unknown kind", http.MethodPut, base + "sideways/x", act, 400, "M_INVALID_PARAM"},
			{"unknown kind get", http.MethodGet, base + "sideways/x", nil, 400, "M_INVALID_PARAM"},
			{"no actions", http.MethodPut, base + "override/x", map[string]any{}, 400, "M_MISSING_PARAM"},
			{"bad action", http.MethodPut, base + "override/x", map[string]any{"actions": []string{"explode"}}, 400, "M_INVALID_PARAM"},
			{"actions not array", http.MethodPut, base + "override/x", map[string]any{"actions": "notify"}, 400, "M_BAD_JSON"},
			{"condition without kind", http.MethodPut, base + "override/x", map[string]any{"actions": []string{}, "conditions": []any{map[string]any{}}}, 400, "M_INVALID_PARAM"},
			{"content without pattern", http.MethodPut, base + "content/x", act, 400, "M_MISSING_PARAM"},
			{"room rule not a room", http.MethodPut, base + "room/x", act, 400, "M_INVALID_PARAM"},
			{"not json", http.MethodPut, base + "override/x", "{", 400, "M_NOT_JSON"},
			{"before default", http.MethodPut, base + "override/x?before=.m.rule.reaction", act, 400, "M_INVALID_PARAM"},
			{"after unknown", http.MethodPut, base + "override/x?after=nope", act, 404, "M_NOT_FOUND"},
			{"enabled missing", http.MethodPut, base + "override/lunch/enabled", map[string]any{}, 400, "M_MISSING_PARAM"},
			{"enabled not bool", http.MethodPut, base + "override/lunch/enabled", map[string]any{"enabled": "yes"}, 400, "M_BAD_JSON"},
			{"enabled unknown rule", http.MethodPut, base + "override/nope/enabled", map[string]any{"enabled": true}, 404, "M_NOT_FOUND"},
			{"actions unknown rule", http.MethodPut, base + "override/nope/actions", act, 404, "M_NOT_FOUND"},
			{"actions bad", http.MethodPut, base + "override/lunch/actions", map[string]any{"actions": []any{map[string]any{"value": 1}}}, 400, "M_INVALID_PARAM"},
			{"no token", http.MethodGet, "/_matrix/client/v3/pushrules/", nil, 401, "M_MISSING_TOKEN"},
		} {
			tk := tok
			if c.code == "M_MISSING_TOKEN" {
				tk = ""
			}
			r := ts.do(t, c.method, c.path, tk, c.body)
			if r.Status != c.status || r.errcode() != c.code {
				t.Errorf("%s: got %d %s, want %d %s", c.name, r.Status, r.Raw, c.status, c.code)
			}
		}
		if _, err := alice.GetPushRule(ctx, "global", pushrules.OverrideRule, "x"); err == nil {
			t.Fatal("a refused PUT created a rule")
		}

		// Bob's rules are his own.
		if rs, _ := bob.GetPushRules(ctx); len(rs.Override) != 12 || rs.Override[0].Enabled {
			t.Fatalf("bob sees alice's rules: %v", ruleIDs(rs.Override))
		}

		// The rule set is account data: /sync delivers it.
		syncUntil(t, alice, "", func(r *mautrix.RespSync) bool {
			for _, ev := range r.AccountData.Events {
				if ev.Type.Type == "m.push_rules" {
					var doc struct {
						Global struct {
							Override []push.Rule `json:"override"`
						} `json:"global"`
					}
					if json.Unmarshal(ev.Content.VeryRaw, &doc) == nil && len(doc.Global.Override) > 2 && doc.Global.Override[1].RuleID == "lunch" {
						return true
					}
				}
			}
			return false
		})
	})
}

// fakeRoom is the room view mautrix's push rule evaluation needs.
type fakeRoom struct{ members int }

func (r fakeRoom) GetOwnDisplayname() string { return "alice" }
func (r fakeRoom) GetMemberCount() int       { return r.members }
