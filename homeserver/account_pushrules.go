package homeserver

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/push"
)

// updatePushRules applies fn to the user's merged rule set and stores the
// result atomically, then wakes /sync.
func (s *Server) updatePushRules(c echo.Context, fn func(rs *push.Ruleset) error) error {
	userID := device(c).UserID
	_, err := s.db.UpdateAccountData(c.Request().Context(), userID, "", push.RulesType, func(old []byte) ([]byte, error) {
		rs := push.Merge(push.Defaults(userID), push.ParseStored(old))
		if err := fn(&rs); err != nil {
			return nil, err
		}
		return json.Marshal(map[string]push.Ruleset{"global": rs})
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
		rs, err := push.Load(c.Request().Context(), s.db, device(c).UserID)
		if err != nil {
			return err
		}
		if global {
			return c.JSON(http.StatusOK, rs)
		}
		return c.JSON(http.StatusOK, map[string]push.Ruleset{"global": rs})
	}
}

// findRule locates kind/ruleID in rs, answering 400 for an unknown kind
// and 404 for an unknown rule.
func findRule(rs *push.Ruleset, kind, ruleID string) (*[]push.Rule, int, error) {
	list := rs.Kind(kind)
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
		rs, err := push.Load(c.Request().Context(), s.db, device(c).UserID)
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
	return s.writePushRule(c, func(rs *push.Ruleset) error {
		list := rs.Kind(kind)
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
		*list = append((*list)[:pos], append([]push.Rule{rule}, (*list)[pos:]...)...)
		return nil
	})
}

// insertPosition is where a new rule goes in a kind's list: before or
// after a named user-defined rule, or else ahead of every user rule (after
// .m.rule.master for override rules).
func insertPosition(list []push.Rule, before, after string) (int, error) {
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
	if push.IsDefaultRuleID(rel) {
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
	return s.writePushRule(c, func(rs *push.Ruleset) error {
		list, i, err := findRule(rs, kind, ruleID)
		if err != nil {
			return err
		}
		if push.IsDefaultRuleID(ruleID) {
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
	return s.writePushRule(c, func(rs *push.Ruleset) error {
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
	return s.writePushRule(c, func(rs *push.Ruleset) error {
		list, i, err := findRule(rs, kind, ruleID)
		if err != nil {
			return err
		}
		(*list)[i].Actions = req.Actions
		return nil
	})
}

// writePushRule runs a change and answers {}.
func (s *Server) writePushRule(c echo.Context, fn func(rs *push.Ruleset) error) error {
	if err := s.updatePushRules(c, fn); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

// parsePushRule validates a PUT /pushrules body for a new user-defined
// rule of kind with ID ruleID (spec: "PUT /pushrules/global/{kind}/{ruleId}").
func parsePushRule(kind, ruleID string, body []byte) (push.Rule, error) {
	var rs push.Ruleset
	if rs.Kind(kind) == nil {
		return push.Rule{}, errInvalidParam("Unknown push rule kind %q", kind)
	}
	if ruleID == "" || push.IsDefaultRuleID(ruleID) {
		return push.Rule{}, errInvalidParam("Rule IDs starting with '.' are reserved for server-default rules")
	}
	if strings.TrimSpace(string(body)) == "" {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		return push.Rule{}, errNotJSON("Content not JSON.")
	}
	var req struct {
		Actions    json.RawMessage `json:"actions"`
		Conditions json.RawMessage `json:"conditions"`
		Pattern    *string         `json:"pattern"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return push.Rule{}, errBadJSON("%v", err)
	}
	if req.Actions == nil {
		return push.Rule{}, errMissingParam("actions is required")
	}
	if err := validatePushActions(req.Actions); err != nil {
		return push.Rule{}, err
	}
	rule := push.Rule{RuleID: ruleID, Enabled: true, Actions: req.Actions}
	switch kind {
	case "override", "underride":
		rule.Conditions = json.RawMessage("[]")
		if req.Conditions != nil && string(req.Conditions) != "null" {
			if err := validatePushConditions(req.Conditions); err != nil {
				return push.Rule{}, err
			}
			rule.Conditions = req.Conditions
		}
	case "content":
		if req.Pattern == nil || *req.Pattern == "" {
			return push.Rule{}, errMissingParam("content rules need a pattern")
		}
		rule.Pattern = req.Pattern
	case "room":
		if !strings.HasPrefix(ruleID, "!") {
			return push.Rule{}, errInvalidParam("the rule ID of a room rule is a room ID")
		}
	case "sender":
		if !strings.HasPrefix(ruleID, "@") {
			return push.Rule{}, errInvalidParam("the rule ID of a sender rule is a user ID")
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
