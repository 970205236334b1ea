package homeserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// deviceKeysFor is a device keys object as a client would upload it.
func deviceKeysFor(cli *mautrix.Client, edKey string) map[string]any {
	return map[string]any{
		"user_id":    cli.UserID,
		"device_id":  cli.DeviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]string{
			"curve25519:" + string(cli.DeviceID): "curve-" + edKey,
			"ed25519:" + string(cli.DeviceID):    edKey,
		},
		"signatures": map[string]any{string(cli.UserID): map[string]string{"ed25519:" + string(cli.DeviceID): "sig-" + edKey}},
	}
}

func signedKey(k string) map[string]any {
	return map[string]any{"key": k, "signatures": map[string]any{"@alice:test.local": map[string]string{"ed25519:LAPTOP": "s"}}}
}

const keysPath = "/_matrix/client/v3/keys/"

func TestKeysUploadQueryClaim(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		ts.user(t, "alice")
		laptop := ts.login(t, "alice", "LAPTOP", "Alice's laptop")
		bob := ts.user(t, "bob")
		ltok, btok := string(laptop.AccessToken), string(bob.AccessToken)

		r := ts.do(t, http.MethodPost, keysPath+"upload", ltok, map[string]any{
			"device_keys": deviceKeysFor(laptop, "ED1"),
			"one_time_keys": map[string]any{
				"signed_curve25519:AAAA": signedKey("otk1"),
				"signed_curve25519:AAAB": signedKey("otk2"),
			},
			"fallback_keys": map[string]any{"signed_curve25519:FFFF": map[string]any{"key": "fb", "fallback": true}},
		})
		wantStatus(t, r, http.StatusOK, "")
		if string(r.Raw) != `{"one_time_key_counts":{"signed_curve25519":2}}`+"\n" {
			t.Fatalf("upload counts = %s", r.Raw)
		}

		// Bob queries Alice's keys.
		q, err := bob.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{laptop.UserID: {}}})
		if err != nil {
			t.Fatal(err)
		}
		dk, ok := q.DeviceKeys[laptop.UserID]["LAPTOP"]
		if !ok || dk.Keys.GetEd25519("LAPTOP") != "ED1" || dk.Unsigned["device_display_name"] != "Alice's laptop" || dk.UserID != laptop.UserID {
			t.Fatalf("query = %+v", q.DeviceKeys)
		}
		if len(q.DeviceKeys[laptop.UserID]) != 1 {
			t.Fatalf("devices without keys listed: %+v", q.DeviceKeys[laptop.UserID])
		}
		// A remote user is a failure for their server, not an error.
		r = ts.do(t, http.MethodPost, keysPath+"query", btok, map[string]any{"device_keys": map[string]any{"@carol:elsewhere.example": []string{}}})
		wantStatus(t, r, http.StatusOK, "")
		if f, _ := r.Body["failures"].(map[string]any); f["elsewhere.example"] == nil {
			t.Fatalf("remote query failures = %s", r.Raw)
		}
		wantStatus(t, ts.do(t, http.MethodPost, keysPath+"query", btok, map[string]any{}), http.StatusBadRequest, "M_MISSING_PARAM")

		// Claims: two one-time keys, then the fallback key, again and again.
		claim := func() (string, json.RawMessage) {
			t.Helper()
			resp, err := bob.ClaimKeys(ctx, &mautrix.ReqClaimKeys{OneTimeKeys: mautrix.OneTimeKeysRequest{laptop.UserID: {"LAPTOP": id.KeyAlgorithmSignedCurve25519}}})
			if err != nil {
				t.Fatal(err)
			}
			for kid, k := range resp.OneTimeKeys[laptop.UserID]["LAPTOP"] {
				raw, _ := json.Marshal(k)
				return string(kid), raw
			}
			return "", nil
		}
		counts := func() string {
			t.Helper()
			r := ts.do(t, http.MethodPost, keysPath+"upload", ltok, map[string]any{})
			wantStatus(t, r, http.StatusOK, "")
			return string(r.Raw)
		}
		seen := map[string]bool{}
		for i, wantCount := range []string{"1", "0"} {
			kid, _ := claim()
			if kid != "signed_curve25519:AAAA" && kid != "signed_curve25519:AAAB" || seen[kid] {
				t.Fatalf("claim %d got %q (seen %v)", i, kid, seen)
			}
			seen[kid] = true
			if c := counts(); c != `{"one_time_key_counts":{"signed_curve25519":`+wantCount+"}}\n" {
				t.Fatalf("counts after claim %d = %s", i, c)
			}
		}
		if types, _ := ts.db.UnusedFallbackKeyTypes(ctx, string(laptop.UserID), "LAPTOP"); !slices.Equal(types, []string{"signed_curve25519"}) {
			t.Fatalf("unused fallback before use = %v", types)
		}
		for i := 0; i < 2; i++ {
			kid, raw := claim()
			var k struct {
				Key string `json:"key"`
			}
			_ = json.Unmarshal(raw, &k)
			if kid != "signed_curve25519:FFFF" || k.Key != "fb" {
				t.Fatalf("fallback claim %d = %q %s", i, kid, raw)
			}
		}
		if types, _ := ts.db.UnusedFallbackKeyTypes(ctx, string(laptop.UserID), "LAPTOP"); len(types) != 0 {
			t.Fatalf("fallback still unused after its claim: %v", types)
		}
		// Nothing for an unknown device or algorithm.
		resp, err := bob.ClaimKeys(ctx, &mautrix.ReqClaimKeys{OneTimeKeys: mautrix.OneTimeKeysRequest{laptop.UserID: {"NOPE": id.KeyAlgorithmSignedCurve25519}}})
		if err != nil || len(resp.OneTimeKeys[laptop.UserID]["NOPE"]) != 0 {
			t.Fatalf("claim from unknown device = %+v, %v", resp, err)
		}
		wantStatus(t, ts.do(t, http.MethodPost, keysPath+"claim", btok, map[string]any{}), http.StatusBadRequest, "M_MISSING_PARAM")
		wantStatus(t, ts.do(t, http.MethodPost, keysPath+"claim", btok, `{"one_time_keys": []}`), http.StatusBadRequest, "M_BAD_JSON")

		// Upload refusals.
		wantStatus(t, ts.do(t, http.MethodPost, keysPath+"upload", ltok, map[string]any{"one_time_keys": map[string]any{"signed_curve25519:KEEP": signedKey("keep")}}), http.StatusOK, "")
		other := deviceKeysFor(laptop, "ED2")
		other["device_id"] = "SOMEONE_ELSE"
		for _, c := range []struct {
			name string
			body any
			code string
		}{
			{"foreign device keys", map[string]any{"device_keys": other}, "M_INVALID_PARAM"},
			{"device keys of another user", map[string]any{"device_keys": deviceKeysFor(bob, "X")}, "M_INVALID_PARAM"},
			{"device keys without keys", map[string]any{"device_keys": map[string]any{"user_id": laptop.UserID, "device_id": "LAPTOP"}}, "M_MISSING_PARAM"},
			{"key id without algorithm", map[string]any{"one_time_keys": map[string]any{"AAAC": "k"}}, "M_INVALID_PARAM"},
			{"key not string or object", map[string]any{"one_time_keys": map[string]any{"curve25519:AAAC": 5}}, "M_BAD_JSON"},
			{"one-time key reused with other content", map[string]any{"one_time_keys": map[string]any{"signed_curve25519:KEEP": signedKey("different")}}, "M_INVALID_PARAM"},
			{"two fallback keys of one algorithm", map[string]any{"fallback_keys": map[string]any{"signed_curve25519:F1": "a", "signed_curve25519:F2": "b"}}, "M_INVALID_PARAM"},
			{"keys not an object", `{"one_time_keys": [1]}`, "M_BAD_JSON"},
			{"not json", `{"device_keys":`, "M_NOT_JSON"},
		} {
			if r := ts.do(t, http.MethodPost, keysPath+"upload", ltok, c.body); r.Status != 400 || r.errcode() != c.code {
				t.Errorf("%s: got %d %s, want 400 %s", c.name, r.Status, r.Raw, c.code)
			}
		}
		// The stored device keys were not touched by refused uploads.
		if q, _ := bob.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{laptop.UserID: {"LAPTOP"}}}); q.DeviceKeys[laptop.UserID]["LAPTOP"].Keys.GetEd25519("LAPTOP") != "ED1" {
			t.Fatalf("device keys changed by a refused upload: %+v", q.DeviceKeys)
		}
	})
}

func TestKeysChanges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice, bob, carol := ts.user(t, "alice"), ts.user(t, "bob"), ts.user(t, "carol")
		room, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		from, err := ts.db.MaxPos(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.UploadKeys(ctx, &mautrix.ReqUploadKeys{DeviceKeys: &mautrix.DeviceKeys{
			UserID: alice.UserID, DeviceID: alice.DeviceID, Algorithms: []id.Algorithm{id.AlgorithmMegolmV1},
			Keys: mautrix.KeyMap{id.NewDeviceKeyID(id.KeyAlgorithmEd25519, alice.DeviceID): "ED"}}}); err != nil {
			t.Fatal(err)
		}
		tok := fmt.Sprintf("s%d_0_0", from)
		ch, err := bob.GetKeyChanges(ctx, tok, "")
		if err != nil || !slices.Contains(ch.Changed, alice.UserID) {
			t.Fatalf("bob's key changes = %+v, %v", ch, err)
		}
		// Carol shares no room with Alice and is not told.
		if ch, err := carol.GetKeyChanges(ctx, tok, ""); err != nil || slices.Contains(ch.Changed, alice.UserID) {
			t.Fatalf("carol's key changes = %+v, %v", ch, err)
		}
		// A range ending before the upload is empty; the spec's GET works too.
		r := ts.do(t, http.MethodGet, keysPath+"changes?from="+tok+"&to="+tok, string(bob.AccessToken), nil)
		wantStatus(t, r, http.StatusOK, "")
		if string(r.Raw) != `{"changed":[],"left":[]}`+"\n" {
			t.Fatalf("empty range = %s", r.Raw)
		}
		// A token from /sync works as it is.
		sync, err := bob.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		if ch, err := bob.GetKeyChanges(ctx, sync.NextBatch, ""); err != nil || len(ch.Changed) != 0 {
			t.Fatalf("changes since the latest sync = %+v, %v", ch, err)
		}
		wantStatus(t, ts.do(t, http.MethodGet, keysPath+"changes", string(bob.AccessToken), nil), http.StatusBadRequest, "M_MISSING_PARAM")
		wantStatus(t, ts.do(t, http.MethodGet, keysPath+"changes?from=yesterday", string(bob.AccessToken), nil), http.StatusBadRequest, "M_INVALID_PARAM")
		wantStatus(t, ts.do(t, http.MethodGet, keysPath+"changes?from=s1&to=x", string(bob.AccessToken), nil), http.StatusBadRequest, "M_INVALID_PARAM")
	})
}

// crossKey is a cross-signing key object for user with public key pub.
func crossKey(user id.UserID, usage, pub string) mautrix.CrossSigningKeys {
	return mautrix.CrossSigningKeys{UserID: user, Usage: []id.CrossSigningUsage{id.CrossSigningUsage(usage)},
		Keys: map[id.KeyID]id.Ed25519{id.KeyID("ed25519:" + pub): id.Ed25519(pub)}}
}

func TestCrossSigning(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		if _, err := alice.UploadKeys(ctx, &mautrix.ReqUploadKeys{DeviceKeys: &mautrix.DeviceKeys{
			UserID: alice.UserID, DeviceID: alice.DeviceID, Algorithms: []id.Algorithm{id.AlgorithmMegolmV1},
			Keys: mautrix.KeyMap{id.NewDeviceKeyID(id.KeyAlgorithmEd25519, alice.DeviceID): "ED"}}}); err != nil {
			t.Fatal(err)
		}
		keys := &mautrix.UploadCrossSigningKeysReq[any]{
			Master:      crossKey(alice.UserID, "master", "MASTER1"),
			SelfSigning: crossKey(alice.UserID, "self_signing", "SELF1"),
			UserSigning: crossKey(alice.UserID, "user_signing", "USER1"),
		}
		// The first upload needs no UIA.
		if err := alice.UploadCrossSigningKeys(ctx, keys, nil); err != nil {
			t.Fatal(err)
		}
		q, err := bob.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{alice.UserID: {}}})
		if err != nil {
			t.Fatal(err)
		}
		if q.MasterKeys[alice.UserID].Keys["ed25519:MASTER1"] != "MASTER1" || q.SelfSigningKeys[alice.UserID].Keys["ed25519:SELF1"] != "SELF1" {
			t.Fatalf("query cross-signing = %+v %+v", q.MasterKeys, q.SelfSigningKeys)
		}
		if _, ok := q.UserSigningKeys[alice.UserID]; ok {
			t.Fatal("bob sees alice's user-signing key")
		}
		if q, _ := alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{alice.UserID: {}}}); q.UserSigningKeys[alice.UserID].Keys["ed25519:USER1"] != "USER1" {
			t.Fatalf("alice's own user-signing key missing: %+v", q.UserSigningKeys)
		}
		// The same master again needs no UIA; a new master does.
		if err := alice.UploadCrossSigningKeys(ctx, keys, nil); err != nil {
			t.Fatalf("re-upload of the same master: %v", err)
		}
		keys.Master = crossKey(alice.UserID, "master", "MASTER2")
		tok := string(alice.AccessToken)
		wantUIA(t, ts.do(t, http.MethodPost, keysPath+"device_signing/upload", tok, keys), "")
		// Only self-signing, with a master stored: UIA too.
		wantUIA(t, ts.do(t, http.MethodPost, keysPath+"device_signing/upload", tok, map[string]any{"self_signing_key": crossKey(alice.UserID, "self_signing", "SELF9")}), "")
		if err := alice.UploadCrossSigningKeys(ctx, keys, func(*mautrix.RespUserInteractive) any { return passwordAuth("alice") }); err != nil {
			t.Fatalf("upload with UIA: %v", err)
		}
		if q, _ := bob.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{alice.UserID: {}}}); q.MasterKeys[alice.UserID].Keys["ed25519:MASTER2"] != "MASTER2" {
			t.Fatalf("master not replaced: %+v", q.MasterKeys)
		}
		// Refused shapes.
		badUsage := map[string]any{"master_key": crossKey(alice.UserID, "self_signing", "M3"), "auth": passwordAuth("alice")}
		wantStatus(t, ts.do(t, http.MethodPost, keysPath+"device_signing/upload", tok, badUsage), http.StatusBadRequest, "M_INVALID_PARAM")
		foreign := map[string]any{"master_key": crossKey(bob.UserID, "master", "M3"), "auth": passwordAuth("alice")}
		wantStatus(t, ts.do(t, http.MethodPost, keysPath+"device_signing/upload", tok, foreign), http.StatusBadRequest, "M_INVALID_PARAM")
		wantStatus(t, ts.do(t, http.MethodPost, keysPath+"device_signing/upload", string(bob.AccessToken),
			map[string]any{"self_signing_key": crossKey(bob.UserID, "self_signing", "B")}), http.StatusBadRequest, "M_MISSING_PARAM")

		// Signatures: Alice signs her device with her self-signing key and
		// Bob's master key with her user-signing key; Bob's device she may not sign.
		wantStatus(t, ts.do(t, http.MethodPost, keysPath+"device_signing/upload", string(bob.AccessToken),
			map[string]any{"master_key": crossKey(bob.UserID, "master", "BOBMASTER")}), http.StatusOK, "")
		devObj := deviceKeysFor(alice, "ED")
		devObj["signatures"] = map[string]any{string(alice.UserID): map[string]string{"ed25519:SELF1": "selfsig"}}
		bobMaster := map[string]any{"user_id": bob.UserID, "usage": []string{"master"}, "keys": map[string]string{"ed25519:BOBMASTER": "BOBMASTER"},
			"signatures": map[string]any{string(alice.UserID): map[string]string{"ed25519:USER1": "usersig"}}}
		r := ts.do(t, http.MethodPost, keysPath+"signatures/upload", tok, map[string]any{
			string(alice.UserID): map[string]any{string(alice.DeviceID): devObj},
			string(bob.UserID): map[string]any{
				"BOBMASTER":          bobMaster,
				string(bob.DeviceID): map[string]any{"signatures": map[string]any{string(alice.UserID): map[string]string{"ed25519:USER1": "x"}}},
				"UNKNOWNKEY":         map[string]any{"signatures": map[string]any{string(alice.UserID): map[string]string{"ed25519:USER1": "x"}}},
			},
		})
		wantStatus(t, r, http.StatusOK, "")
		var up struct {
			Failures map[string]map[string]struct {
				ErrCode string `json:"errcode"`
			} `json:"failures"`
		}
		_ = json.Unmarshal(r.Raw, &up)
		if up.Failures[string(bob.UserID)][string(bob.DeviceID)].ErrCode != "M_FORBIDDEN" ||
			up.Failures[string(bob.UserID)]["UNKNOWNKEY"].ErrCode != "M_NOT_FOUND" || len(up.Failures) != 1 {
			t.Fatalf("signature failures = %s", r.Raw)
		}
		q, _ = bob.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{alice.UserID: {}, bob.UserID: {}}})
		if q.DeviceKeys[alice.UserID][alice.DeviceID].Signatures[alice.UserID]["ed25519:SELF1"] != "selfsig" {
			t.Fatalf("device signature not merged: %+v", q.DeviceKeys[alice.UserID])
		}
		if q.MasterKeys[bob.UserID].Signatures[alice.UserID]["ed25519:USER1"] != "usersig" {
			t.Fatalf("master signature not merged: %+v", q.MasterKeys[bob.UserID])
		}
	})
}
