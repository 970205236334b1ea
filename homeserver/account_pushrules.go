package homeserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Push rules (spec: Client-Server API, "Push Notifications", "Push Rules"
// and "Push Rules: API"). A user's rule set lives in global account data
// of type m.push_rules, in the same {"global": {...}} shape that
// GET /pushrules/ returns, so /sync delivers it as Synapse does. On every
// read the stored set is merged with the current server-default rules:
// defaults keep their conditions and order, and take the stored enabled
// flag and actions.

// pushRulesType is the account data type holding the rule set.
const pushRulesType = "m.push_rules"

// pushRule is one push rule. Actions and Conditions are kept as the JSON
// the client sent, after validation.
type pushRule struct {
	RuleID     string          `json:"rule_id"`
	Default    bool            `json:"default"`
	Enabled    bool            `json:"enabled"`
	Actions    json.RawMessage `json:"actions"`
	Conditions json.RawMessage `json:"conditions,omitempty"`
	Pattern    *string         `json:"pattern,omitempty"`
}

// pushRuleset is one scope's rules by kind, highest priority first.
type pushRuleset struct {
	Override  []pushRule `json:"override"`
	Content   []pushRule `json:"content"`
	Room      []pushRule `json:"room"`
	Sender    []pushRule `json:"sender"`
	Underride []pushRule `json:"underride"`
}

// kind returns the rule list of a kind, or nil for an unknown kind.
func (rs *pushRuleset) kind(k string) *[]pushRule {
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

var pushRuleKinds = []string{"override", "content", "room", "sender", "underride"}

// defaultPushRulesJSON is the spec's predefined rule set ("Predefined
// Rules": default override, content and underride rules, Matrix v1.12),
// with @@USER_ID@@ and @@LOCALPART@@ standing for the user.
const defaultPushRulesJSON = `{
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

// defaultPushRules returns the predefined rules for userID.
func defaultPushRules(userID string) pushRuleset {
	local := strings.TrimPrefix(userID, "@")
	if i := strings.IndexByte(local, ':'); i >= 0 {
		local = local[:i]
	}
	r := strings.NewReplacer("@@USER_ID@@", jsonStringBody(userID), "@@LOCALPART@@", jsonStringBody(local))
	var rs pushRuleset
	if err := json.Unmarshal([]byte(r.Replace(defaultPushRulesJSON)), &rs); err != nil {
		// The template is a constant checked by TestDefaultPushRules.
		return pushRuleset{}
	}
	return rs
}

// jsonStringBody is s escaped for use inside a JSON string literal.
func jsonStringBody(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

// isDefaultRuleID reports whether a rule ID is reserved for server-default
// rules (spec: rule IDs of predefined rules start with a dot).
func isDefaultRuleID(id string) bool { return strings.HasPrefix(id, ".") }

// mergePushRules lays the stored rules over the defaults: user rules come
// before the defaults of their kind, except that .m.rule.master stays the
// first override rule (spec: "Push Rules", priority of predefined rules);
// stored enabled flags and actions of default rules are kept.
func mergePushRules(defaults, stored pushRuleset) pushRuleset {
	var out pushRuleset
	for _, k := range pushRuleKinds {
		def := append([]pushRule(nil), *defaults.kind(k)...)
		var users []pushRule
		changed := map[string]pushRule{}
		for _, r := range *stored.kind(k) {
			if isDefaultRuleID(r.RuleID) {
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
		merged := make([]pushRule, 0, len(def)+len(users))
		if k == "override" && len(def) > 0 && def[0].RuleID == ".m.rule.master" {
			merged = append(merged, def[0])
			def = def[1:]
		}
		merged = append(merged, users...)
		merged = append(merged, def...)
		*out.kind(k) = merged
	}
	return out
}

// parseStoredPushRules reads the m.push_rules content; anything malformed
// counts as no stored rules.
func parseStoredPushRules(content []byte) pushRuleset {
	var doc struct {
		Global pushRuleset `json:"global"`
	}
	if content != nil && json.Unmarshal(content, &doc) == nil {
		return doc.Global
	}
	return pushRuleset{}
}

// pushRules returns a user's merged rule set.
func (s *Server) pushRules(ctx context.Context, userID string) (pushRuleset, error) {
	content, err := s.db.GetAccountData(ctx, userID, "", pushRulesType)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return pushRuleset{}, err
	}
	return mergePushRules(defaultPushRules(userID), parseStoredPushRules(content)), nil
}

// pushRulesContent is the m.push_rules account data content for userID,
// defaults included: /sync serves it in account_data on an initial sync
// of a user who never changed a rule.
func (s *Server) pushRulesContent(ctx context.Context, userID string) ([]byte, error) {
	rs, err := s.pushRules(ctx, userID)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]pushRuleset{"global": rs})
}

// updatePushRules applies fn to the user's merged rule set and stores the
// result atomically, then wakes /sync.
func (s *Server) updatePushRules(c echo.Context, fn func(rs *pushRuleset) error) error {
	userID := device(c).UserID
	_, err := s.db.UpdateAccountData(c.Request().Context(), userID, "", pushRulesType, func(old []byte) ([]byte, error) {
		rs := mergePushRules(defaultPushRules(userID), parseStoredPushRules(old))
		if err := fn(&rs); err != nil {
			return nil, err
		}
		return json.Marshal(map[string]pushRuleset{"global": rs})
	})
	if err != nil {
		return err
	}
	return nil
}

// getAllPushRules implements GET /pushrules/ ({"global": ruleset}) and,
// with global set, GET /pushrules/global/ (the ruleset itself).
func (s *Server) getAllPushRules(global bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		rs, err := s.pushRules(c.Request().Context(), device(c).UserID)
		if err != nil {
			return err
		}
		if global {
			return c.JSON(http.StatusOK, rs)
		}
		return c.JSON(http.StatusOK, map[string]pushRuleset{"global": rs})
	}
}

// findRule locates kind/ruleID in rs, answering 400 for an unknown kind
// and 404 for an unknown rule.
func findRule(rs *pushRuleset, kind, ruleID string) (*[]pushRule, int, error) {
	list := rs.kind(kind)
	if list == nil {
		return nil, -1, errInvalidParam("Unknown push rule kind %q", kind)
	}
	for i := range *list {
		if (*list)[i].RuleID == ruleID {
			return list, i, nil
		}
	}
	return list, -1, errNotFound("Unknown push rule")
}

// getPushRule implements GET /pushrules/global/{kind}/{ruleId} and, with
// attr "enabled" or "actions", its /enabled and /actions sub-resources.
func (s *Server) getPushRule(attr string) echo.HandlerFunc {
	return func(c echo.Context) error {
		rs, err := s.pushRules(c.Request().Context(), device(c).UserID)
		if err != nil {
			return err
		}
		list, i, err := findRule(&rs, param(c, "kind"), param(c, "ruleId"))
		if err != nil {
			return err
		}
		r := (*list)[i]
		switch attr {
		case "enabled":
			return c.JSON(http.StatusOK, map[string]bool{"enabled": r.Enabled})
		case "actions":
			return c.JSON(http.StatusOK, map[string]json.RawMessage{"actions": r.Actions})
		}
		return c.JSON(http.StatusOK, r)
	}
}

// putPushRule implements PUT /pushrules/global/{kind}/{ruleId}: it adds or
// replaces a user-defined rule, placed by the before/after query
// parameters or else first among the user's rules of its kind.
func (s *Server) putPushRule(c echo.Context) error {
	kind, ruleID := param(c, "kind"), param(c, "ruleId")
	body, err := readBody(c)
	if err != nil {
		return err
	}
	rule, err := parsePushRule(kind, ruleID, body)
	if err != nil {
		return err
	}
	before, after := c.QueryParam("before"), c.QueryParam("after")
	return s.writePushRule(c, func(rs *pushRuleset) error {
		list := rs.kind(kind)
		at := -1
		for i := range *list {
			if (*list)[i].RuleID == ruleID {
				at = i
			}
		}
		if at >= 0 && before == "" && after == "" {
			(*list)[at] = rule
			return nil
		}
		if at >= 0 {
			*list = append((*list)[:at], (*list)[at+1:]...)
		}
		pos, err := insertPosition(*list, before, after)
		if err != nil {
			return err
		}
		*list = append((*list)[:pos], append([]pushRule{rule}, (*list)[pos:]...)...)
		return nil
	})
}

// insertPosition is where a new rule goes in a kind's list: before or
// after a named user-defined rule, or else ahead of every user rule (after
// .m.rule.master for override rules).
func insertPosition(list []pushRule, before, after string) (int, error) {
	rel, offset := before, 0
	if rel == "" {
		rel, offset = after, 1
	}
	if rel == "" {
		if len(list) > 0 && list[0].RuleID == ".m.rule.master" {
			return 1, nil
		}
		return 0, nil
	}
	if isDefaultRuleID(rel) {
		return 0, errInvalidParam("A rule cannot be placed relative to a server-default rule")
	}
	for i, r := range list {
		if r.RuleID == rel {
			return i + offset, nil
		}
	}
	return 0, errNotFound("Push rule %q, named in before/after, does not exist", rel)
}

// deletePushRule implements DELETE /pushrules/global/{kind}/{ruleId}.
func (s *Server) deletePushRule(c echo.Context) error {
	kind, ruleID := param(c, "kind"), param(c, "ruleId")
	return s.writePushRule(c, func(rs *pushRuleset) error {
		list, i, err := findRule(rs, kind, ruleID)
		if err != nil {
			return err
		}
		if isDefaultRuleID(ruleID) {
			return errInvalidParam("Server-default rules cannot be deleted")
		}
		*list = append((*list)[:i], (*list)[i+1:]...)
		return nil
	})
}

// putPushRuleEnabled implements PUT /pushrules/global/{kind}/{ruleId}/enabled.
func (s *Server) putPushRuleEnabled(c echo.Context) error {
	var req struct {
		Enabled *bool `json:"enabled"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if req.Enabled == nil {
		return errMissingParam("enabled is required")
	}
	kind, ruleID := param(c, "kind"), param(c, "ruleId")
	return s.writePushRule(c, func(rs *pushRuleset) error {
		list, i, err := findRule(rs, kind, ruleID)
		if err != nil {
			return err
		}
		(*list)[i].Enabled = *req.Enabled
		return nil
	})
}

// putPushRuleActions implements PUT /pushrules/global/{kind}/{ruleId}/actions.
func (s *Server) putPushRuleActions(c echo.Context) error {
	var req struct {
		Actions json.RawMessage `json:"actions"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if req.Actions == nil {
		return errMissingParam("actions is required")
	}
	if err := validatePushActions(req.Actions); err != nil {
		return err
	}
	kind, ruleID := param(c, "kind"), param(c, "ruleId")
	return s.writePushRule(c, func(rs *pushRuleset) error {
		list, i, err := findRule(rs, kind, ruleID)
		if err != nil {
			return err
		}
		(*list)[i].Actions = req.Actions
		return nil
	})
}

// writePushRule runs a change and answers {}.
func (s *Server) writePushRule(c echo.Context, fn func(rs *pushRuleset) error) error {
	if err := s.updatePushRules(c, fn); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

// parsePushRule validates a PUT /pushrules body for a new user-defined
// rule of kind with ID ruleID (spec: "PUT /pushrules/global/{kind}/{ruleId}").
func parsePushRule(kind, ruleID string, body []byte) (pushRule, error) {
	var rs pushRuleset
	if rs.kind(kind) == nil {
		return pushRule{}, errInvalidParam("Unknown push rule kind %q", kind)
	}
	if ruleID == "" || isDefaultRuleID(ruleID) {
		return pushRule{}, errInvalidParam("Rule IDs starting with '.' are reserved for server-default rules")
	}
	if strings.TrimSpace(string(body)) == "" {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		return pushRule{}, errNotJSON("Content not JSON.")
	}
	var req struct {
		Actions    json.RawMessage `json:"actions"`
		Conditions json.RawMessage `json:"conditions"`
		Pattern    *string         `json:"pattern"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return pushRule{}, errBadJSON("%v", err)
	}
	if req.Actions == nil {
		return pushRule{}, errMissingParam("actions is required")
	}
	if err := validatePushActions(req.Actions); err != nil {
		return pushRule{}, err
	}
	rule := pushRule{RuleID: ruleID, Enabled: true, Actions: req.Actions}
	switch kind {
	case "override", "underride":
		rule.Conditions = json.RawMessage("[]")
		if req.Conditions != nil && string(req.Conditions) != "null" {
			if err := validatePushConditions(req.Conditions); err != nil {
				return pushRule{}, err
			}
			rule.Conditions = req.Conditions
		}
	case "content":
		if req.Pattern == nil || *req.Pattern == "" {
			return pushRule{}, errMissingParam("content rules need a pattern")
		}
		rule.Pattern = req.Pattern
	case "room":
		if !strings.HasPrefix(ruleID, "!") {
			return pushRule{}, errInvalidParam("the rule ID of a room rule is a room ID")
		}
	case "sender":
		if !strings.HasPrefix(ruleID, "@") {
			return pushRule{}, errInvalidParam("the rule ID of a sender rule is a user ID")
		}
	}
	return rule, nil
}

// validatePushActions checks an actions array (spec: "Actions"): the
// strings notify, dont_notify and coalesce (the last two are deprecated
// no-ops) and set_tweak objects.
func validatePushActions(raw json.RawMessage) error {
	var actions []json.RawMessage
	if err := json.Unmarshal(raw, &actions); err != nil || actions == nil {
		return errBadJSON("actions must be an array")
	}
	for _, a := range actions {
		var name string
		if json.Unmarshal(a, &name) == nil {
			switch name {
			case "notify", "dont_notify", "coalesce":
				continue
			}
			return errInvalidParam("unknown action %q", name)
		}
		var tweak struct {
			SetTweak *string `json:"set_tweak"`
		}
		if err := json.Unmarshal(a, &tweak); err != nil || tweak.SetTweak == nil || *tweak.SetTweak == "" {
			return errInvalidParam("an action is a string or a set_tweak object")
		}
	}
	return nil
}

// validatePushConditions checks a conditions array: objects with a kind.
// Unknown kinds are kept, as the spec lets clients and servers ignore them.
func validatePushConditions(raw json.RawMessage) error {
	var conds []struct {
		Kind *string `json:"kind"`
	}
	if err := json.Unmarshal(raw, &conds); err != nil || conds == nil {
		return errBadJSON("conditions must be an array of objects")
	}
	for _, c := range conds {
		if c.Kind == nil || *c.Kind == "" {
			return errInvalidParam("every condition needs a kind")
		}
	}
	return nil
}
