package storage

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzMergeSignatures feeds arbitrary stored key objects to the signature
// merge: it must never panic, and its output must carry the new signature.
func FuzzMergeSignatures(f *testing.F) {
	f.Add([]byte(`{"keys":{"ed25519:D":"x"},"signatures":{"@a:t":{"ed25519:D":"s"}}}`), "@a:t", "ed25519:S", "sig")
	f.Add([]byte(`{"signatures":null}`), "@b:t", "ed25519:K", "sig")
	f.Add([]byte(`{"signatures":{"@a:t":null}}`), "@a:t", "k", "v")
	f.Add([]byte(`{"signatures":[1,2]}`), "@a:t", "k", "v")
	f.Add([]byte(`[]`), "@a:t", "k", "v")
	f.Fuzz(func(t *testing.T, obj []byte, signer, keyID, sig string) {
		if !utf8.ValidString(signer + keyID + sig) {
			return // strings decoded from a request body are valid UTF-8
		}
		out, err := mergeSignatures(obj, map[string]map[string]string{signer: {keyID: sig}})
		if err != nil {
			return
		}
		var got struct {
			Signatures map[string]map[string]string `json:"signatures"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("merged output %s: %v", out, err)
		}
		if got.Signatures[signer][keyID] != sig {
			t.Fatalf("signature lost: %s", out)
		}
	})
}
