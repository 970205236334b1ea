package push

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Push rules (spec: Client-Server API, "Push Notifications", "Push Rules"
// and "Push Rules: API"). A user's rule set lives in global account data
// of type m.push_rules, in the same {"global": {...}} shape that
// GET /pushrules/ returns, so /sync delivers it as Synapse does. On every
// read the stored set is merged with the current server-default rules:
// defaults keep their conditions and order, and take the stored enabled
// flag and actions.

// RulesType is the account data type holding the rule set.
const RulesType = "m.push_rules"

// Rule is one push rule. Actions and Conditions are kept as the JSON
// the client sent, after validation.
type Rule struct {
	RuleID     string          `json:"rule_id"`
	Default    bool            `json:"default"`
	Enabled    bool            `json:"enabled"`
	Actions    json.RawMessage `json:"actions"`
	Conditions json.RawMessage `json:"conditions,omitempty"`
	Pattern    *string         `json:"pattern,omitempty"`
}

// Ruleset is one scope's rules by kind, highest priority first.
type Ruleset struct {
	Override  []Rule `json:"override"`
	Content   []Rule `json:"content"`
	Room      []Rule `json:"room"`
	Sender    []Rule `json:"sender"`
	Underride []Rule `json:"underride"`
}

// Kind returns the rule list of a kind, or nil for an unknown kind.
func (rs *Ruleset) Kind(k string) *[]Rule {
	switch k {
	case "override":
		return &rs.Override
	case "content":
		return &rs.Content
	case "room":
		return &rs.Room
	case "sender":
		return &rs.Sender
	case "underride":
		return &rs.Underride
	}
	return nil
}

// Kinds are the rule kinds in the order they are tried.
var Kinds = []string{"override", "content", "room", "sender", "underride"}

// defaultRulesJSON is the spec's predefined rule set ("Predefined
// Rules": default override, content and underride rules, Matrix v1.12),
// with @@USER_ID@@ and @@LOCALPART@@ standing for the user.
const defaultRulesJSON = `{
"override": [
 {"rule_id": ".m.rule.master", "default": true, "enabled": false, "conditions": [], "actions": []},
 {"rule_id": ".m.rule.suppress_notices", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "content.msgtype", "pattern": "m.notice"}], "actions": []},
 {"rule_id": ".m.rule.invite_for_me", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.member"},
   {"kind": "event_match", "key": "content.membership", "pattern": "invite"},
   {"kind": "event_match", "key": "state_key", "pattern": "@@USER_ID@@"}],
  "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
 {"rule_id": ".m.rule.member_event", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.member"}], "actions": []},
 {"rule_id": ".m.rule.is_user_mention", "default": true, "enabled": true,
  "conditions": [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": "@@USER_ID@@"}],
  "actions": ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]},
 {"rule_id": ".m.rule.contains_display_name", "default": true, "enabled": true,
  "conditions": [{"kind": "contains_display_name"}],
  "actions": ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]},
 {"rule_id": ".m.rule.is_room_mention", "default": true, "enabled": true,
  "conditions": [{"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": true},
   {"kind": "sender_notification_permission", "key": "room"}],
  "actions": ["notify", {"set_tweak": "highlight"}]},
 {"rule_id": ".m.rule.roomnotif", "default": true, "enabled": true,
  "conditions": [{"kind": "sender_notification_permission", "key": "room"},
   {"kind": "event_match", "key": "content.body", "pattern": "@room"}],
  "actions": ["notify", {"set_tweak": "highlight"}]},
 {"rule_id": ".m.rule.tombstone", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.tombstone"},
   {"kind": "event_match", "key": "state_key", "pattern": ""}],
  "actions": ["notify", {"set_tweak": "highlight"}]},
 {"rule_id": ".m.rule.reaction", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.reaction"}], "actions": []},
 {"rule_id": ".m.rule.room.server_acl", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.server_acl"},
   {"kind": "event_match", "key": "state_key", "pattern": ""}], "actions": []},
 {"rule_id": ".m.rule.suppress_edits", "default": true, "enabled": true,
  "conditions": [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}], "actions": []}
],
"content": [
 {"rule_id": ".m.rule.contains_user_name", "default": true, "enabled": true, "pattern": "@@LOCALPART@@",
  "actions": ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]}
],
"room": [],
"sender": [],
"underride": [
 {"rule_id": ".m.rule.call", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.call.invite"}],
  "actions": ["notify", {"set_tweak": "sound", "value": "ring"}]},
 {"rule_id": ".m.rule.encrypted_room_one_to_one", "default": true, "enabled": true,
  "conditions": [{"kind": "room_member_count", "is": "2"}, {"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"}],
  "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
 {"rule_id": ".m.rule.room_one_to_one", "default": true, "enabled": true,
  "conditions": [{"kind": "room_member_count", "is": "2"}, {"kind": "event_match", "key": "type", "pattern": "m.room.message"}],
  "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
 {"rule_id": ".m.rule.message", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}], "actions": ["notify"]},
 {"rule_id": ".m.rule.encrypted", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"}], "actions": ["notify"]}
]
}`

// Defaults returns the predefined rules for userID.
func Defaults(userID string) Ruleset {
	local := strings.TrimPrefix(userID, "@")
	if i := strings.IndexByte(local, ':'); i >= 0 {
		local = local[:i]
	}
	r := strings.NewReplacer("@@USER_ID@@", jsonStringBody(userID), "@@LOCALPART@@", jsonStringBody(local))
	var rs Ruleset
	if err := json.Unmarshal([]byte(r.Replace(defaultRulesJSON)), &rs); err != nil {
		// The template is a constant checked by TestDefaultPushRules.
		return Ruleset{}
	}
	return rs
}

// jsonStringBody is s escaped for use inside a JSON string literal.
func jsonStringBody(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

// IsDefaultRuleID reports whether a rule ID is reserved for server-default
// rules (spec: rule IDs of predefined rules start with a dot).
func IsDefaultRuleID(id string) bool { return strings.HasPrefix(id, ".") }

// Merge lays the stored rules over the defaults: user rules come
// before the defaults of their kind, except that .m.rule.master stays the
// first override rule (spec: "Push Rules", priority of predefined rules);
// stored enabled flags and actions of default rules are kept.
func Merge(defaults, stored Ruleset) Ruleset {
	var out Ruleset
	for _, k := range Kinds {
		def := append([]Rule(nil), *defaults.Kind(k)...)
		var users []Rule
		changed := map[string]Rule{}
		for _, r := range *stored.Kind(k) {
			if IsDefaultRuleID(r.RuleID) {
				changed[r.RuleID] = r
			} else if r.RuleID != "" {
				r.Default = false
				users = append(users, r)
			}
		}
		for i := range def {
			if r, ok := changed[def[i].RuleID]; ok {
				def[i].Enabled = r.Enabled
				if r.Actions != nil {
					def[i].Actions = r.Actions
				}
			}
		}
		merged := make([]Rule, 0, len(def)+len(users))
		if k == "override" && len(def) > 0 && def[0].RuleID == ".m.rule.master" {
			merged = append(merged, def[0])
			def = def[1:]
		}
		merged = append(merged, users...)
		merged = append(merged, def...)
		*out.Kind(k) = merged
	}
	return out
}

// ParseStored reads the m.push_rules content; anything malformed
// counts as no stored rules.
func ParseStored(content []byte) Ruleset {
	var doc struct {
		Global Ruleset `json:"global"`
	}
	if content != nil && json.Unmarshal(content, &doc) == nil {
		return doc.Global
	}
	return Ruleset{}
}

// AccountData is the account data read the rules need.
type AccountData interface {
	GetAccountData(ctx context.Context, userID, roomID, dataType string) ([]byte, error)
}

// Load returns a user's merged rule set.
func Load(ctx context.Context, db AccountData, userID string) (Ruleset, error) {
	content, err := db.GetAccountData(ctx, userID, "", RulesType)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return Ruleset{}, err
	}
	return Merge(Defaults(userID), ParseStored(content)), nil
}

// Content is the m.push_rules account data content for userID,
// defaults included: /sync serves it in account_data on an initial sync
// of a user who never changed a rule.
func Content(ctx context.Context, db AccountData, userID string) ([]byte, error) {
	rs, err := Load(ctx, db, userID)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]Ruleset{"global": rs})
}
