package homeserver

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchboard-chat/switchboard/homeserver/push"
)

// Fuzz targets for the account endpoints' request parsers. Run one with
// e.g. go test ./homeserver -run '^$' -fuzz FuzzParseKeysUpload -fuzztime 20s

func FuzzParseKeysUpload(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `[]`,
		`{"device_keys":{"user_id":"@a:t","device_id":"D","algorithms":["m.megolm.v1.aes-sha2"],"keys":{"ed25519:D":"k"},"signatures":{},"unsigned":{"x":1}}}`,
		`{"one_time_keys":{"signed_curve25519:A":{"key":"k"},"curve25519:B":"k"}}`,
		`{"fallback_keys":{"signed_curve25519:F":{"key":"k","fallback":true}}}`,
		`{"org.matrix.msc2732.fallback_keys":{"a:b":"c","a:c":"d"}}`,
		`{"one_time_keys":{":x":"k","x:":"k"}}`,
		`{"device_keys":null,"one_time_keys":{"a:b":5}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		up, err := parseKeysUpload(body, "@a:t", "D")
		if err != nil {
			if _, ok := err.(*MatrixError); !ok {
				t.Fatalf("non-Matrix error %T: %v", err, err)
			}
			return
		}
		if up.DeviceKeys != nil {
			var m map[string]json.RawMessage
			if json.Unmarshal(up.DeviceKeys, &m) != nil || m["unsigned"] != nil {
				t.Fatalf("device keys %s", up.DeviceKeys)
			}
		}
		for _, keys := range []map[string][]byte{up.OneTimeKeys, up.FallbackKeys} {
			for id, k := range keys {
				i := strings.IndexByte(id, ':')
				if i <= 0 || i == len(id)-1 || !json.Valid(k) {
					t.Fatalf("accepted key %q = %s", id, k)
				}
			}
		}
	})
}

func FuzzParsePushRule(f *testing.F) {
	for _, s := range []struct{ kind, id, body string }{
		{"override", "x", `{"actions":["notify"],"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.message"}]}`},
		{"content", "c", `{"actions":[{"set_tweak":"sound","value":"default"}],"pattern":"cake"}`},
		{"room", "!r:t", `{"actions":[]}`},
		{"sender", "@u:t", `{"actions":["dont_notify","coalesce"]}`},
		{"underride", ".m.rule.x", `{"actions":[]}`},
		{"override", "x", `{"actions":null,"conditions":null}`},
		{"nope", "x", ``},
	} {
		f.Add(s.kind, s.id, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, kind, ruleID string, body []byte) {
		rule, err := parsePushRule(kind, ruleID, body)
		if err != nil {
			if _, ok := err.(*MatrixError); !ok {
				t.Fatalf("non-Matrix error %T: %v", err, err)
			}
			return
		}
		if rule.RuleID != ruleID || push.IsDefaultRuleID(ruleID) || rule.Default {
			t.Fatalf("accepted rule %+v", rule)
		}
		if err := validatePushActions(rule.Actions); err != nil {
			t.Fatalf("accepted actions %s: %v", rule.Actions, err)
		}
		if _, err := json.Marshal(rule); err != nil {
			t.Fatalf("rule does not marshal: %v", err)
		}
	})
}

// FuzzMergePushRules feeds arbitrary m.push_rules content (clients can
// write it through the account data API) to the merge.
func FuzzMergePushRules(f *testing.F) {
	f.Add([]byte(`{"global":{"override":[{"rule_id":".m.rule.master","enabled":true,"actions":["notify"]},{"rule_id":"mine","actions":[]}]}}`))
	f.Add([]byte(`{"global":{"content":[{"rule_id":".m.rule.contains_user_name","enabled":false}],"room":[{"rule_id":"!r:t"}]}}`))
	f.Add([]byte(`{"global":null}`))
	f.Add([]byte(`[]`))
	defaults := push.Defaults("@a:t")
	f.Fuzz(func(t *testing.T, content []byte) {
		rs := push.Merge(defaults, push.ParseStored(content))
		if rs.Override[0].RuleID != ".m.rule.master" {
			t.Fatalf("master is not first: %s", rs.Override[0].RuleID)
		}
		for _, k := range push.Kinds {
			seen := map[string]int{}
			for _, r := range *rs.Kind(k) {
				seen[r.RuleID]++
			}
			for _, d := range *defaults.Kind(k) {
				if seen[d.RuleID] != 1 {
					t.Fatalf("default %s appears %d times", d.RuleID, seen[d.RuleID])
				}
			}
		}
		if _, err := json.Marshal(map[string]push.Ruleset{"global": rs}); err != nil {
			t.Fatalf("merged rules do not marshal: %v", err)
		}
	})
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{`{}`, ` {"room":{"timeline":{"limit":10}}} `, `[]`, `"x"`, `{`, ``, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := parseFilter(body)
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(out, &m) != nil || m == nil {
			t.Fatalf("accepted filter %q", out)
		}
	})
}

func FuzzParseCrossSigningKey(f *testing.F) {
	f.Add([]byte(`{"user_id":"@a:t","usage":["master"],"keys":{"ed25519:K":"K"}}`), "master")
	f.Add([]byte(`{"user_id":"@a:t","usage":["self_signing"],"keys":{"ed25519:K":"K","ed25519:L":"L"}}`), "self_signing")
	f.Add([]byte(`null`), "user_signing")
	f.Fuzz(func(t *testing.T, raw []byte, usage string) {
		key, err := parseCrossSigningKey(raw, "@a:t", usage)
		if err != nil {
			return
		}
		var k crossSigningKey
		if json.Unmarshal(key, &k) != nil || k.UserID != "@a:t" || len(k.Keys) != 1 {
			t.Fatalf("accepted key %s", key)
		}
	})
}
