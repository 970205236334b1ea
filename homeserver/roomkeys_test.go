package homeserver

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

func sessionKey(fmi, fwd int, verified bool, tag string) map[string]any {
	return map[string]any{"first_message_index": fmi, "forwarded_count": fwd, "is_verified": verified,
		"session_data": map[string]any{"ephemeral": tag, "ciphertext": "c-" + tag, "mac": "m"}}
}

func TestKeyBackupVersions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		tok := alice.AccessToken
		const base = "/_matrix/client/v3/room_keys/version"
		wantStatus(t, ts.do(t, http.MethodGet, base, tok, nil), http.StatusNotFound, "M_NOT_FOUND")
		wantStatus(t, ts.do(t, http.MethodGet, base+"/1", tok, nil), http.StatusNotFound, "M_NOT_FOUND")
		alg := "m.megolm_backup.v1.curve25519-aes-sha2"
		r := ts.do(t, http.MethodPost, base, tok, map[string]any{"algorithm": alg, "auth_data": map[string]any{"public_key": "pk1"}})
		wantStatus(t, r, http.StatusOK, "")
		if r.Body["version"] != "1" {
			t.Fatalf("create: %s", r.Raw)
		}
		r = ts.do(t, http.MethodGet, base, tok, nil)
		wantStatus(t, r, http.StatusOK, "")
		if r.Body["version"] != "1" || r.Body["algorithm"] != alg || r.Body["count"] != float64(0) || r.Body["etag"] == nil ||
			r.Body["auth_data"].(map[string]any)["public_key"] != "pk1" {
			t.Fatalf("current: %s", r.Raw)
		}
		// Bob has none: backups are per user.
		wantStatus(t, ts.do(t, http.MethodGet, base, bob.AccessToken, nil), http.StatusNotFound, "M_NOT_FOUND")
		// Update auth_data; the algorithm and version cannot change.
		wantStatus(t, ts.do(t, http.MethodPut, base+"/1", tok, map[string]any{"algorithm": alg, "auth_data": map[string]any{"public_key": "pk1", "signatures": map[string]any{}}, "version": "1"}), http.StatusOK, "")
		wantStatus(t, ts.do(t, http.MethodPut, base+"/1", tok, map[string]any{"algorithm": "other", "auth_data": map[string]any{}}), http.StatusBadRequest, "M_INVALID_PARAM")
		wantStatus(t, ts.do(t, http.MethodPut, base+"/1", tok, map[string]any{"algorithm": alg, "auth_data": map[string]any{}, "version": "2"}), http.StatusBadRequest, "M_INVALID_PARAM")
		wantStatus(t, ts.do(t, http.MethodPut, base+"/7", tok, map[string]any{"algorithm": alg, "auth_data": map[string]any{}}), http.StatusNotFound, "M_NOT_FOUND")
		wantStatus(t, ts.do(t, http.MethodPost, base, tok, map[string]any{"algorithm": alg}), http.StatusBadRequest, "M_MISSING_PARAM")
		wantStatus(t, ts.do(t, http.MethodPost, base, tok, map[string]any{"algorithm": alg, "auth_data": "x"}), http.StatusBadRequest, "M_BAD_JSON")
		wantStatus(t, ts.do(t, http.MethodPost, base, tok, "{"), http.StatusBadRequest, "M_NOT_JSON")
		r = ts.do(t, http.MethodGet, base+"/1", tok, nil)
		if _, ok := r.Body["auth_data"].(map[string]any)["signatures"]; !ok {
			t.Fatalf("update lost: %s", r.Raw)
		}
		// A second version becomes current; deleting it leaves no current
		// one until... the first is still there and current again.
		r = ts.do(t, http.MethodPost, base, tok, map[string]any{"algorithm": alg, "auth_data": map[string]any{"public_key": "pk2"}})
		if r.Body["version"] != "2" {
			t.Fatalf("second: %s", r.Raw)
		}
		wantStatus(t, ts.do(t, http.MethodDelete, base+"/2", tok, nil), http.StatusOK, "")
		wantStatus(t, ts.do(t, http.MethodDelete, base+"/2", tok, nil), http.StatusNotFound, "M_NOT_FOUND")
		wantStatus(t, ts.do(t, http.MethodGet, base+"/2", tok, nil), http.StatusNotFound, "M_NOT_FOUND")
		if r := ts.do(t, http.MethodGet, base, tok, nil); r.Body["version"] != "1" {
			t.Fatalf("after deleting 2, current is %s", r.Raw)
		}
		// Deleted numbers are not reused.
		if r := ts.do(t, http.MethodPost, base, tok, map[string]any{"algorithm": alg, "auth_data": map[string]any{}}); r.Body["version"] != "3" {
			t.Fatalf("third: %s", r.Raw)
		}
	})
}

func TestKeyBackupKeysRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		alice := ts.user(t, "alice")
		tok := alice.AccessToken
		const room = "!room:test.local"
		roomPath := "/_matrix/client/v3/room_keys/keys/" + url.PathEscape(room)
		alg := "m.megolm_backup.v1.curve25519-aes-sha2"
		// No backup: writes are 404.
		wantStatus(t, ts.do(t, http.MethodPut, roomPath+"/s1?version=1", tok, sessionKey(0, 0, false, "a")), http.StatusNotFound, "M_NOT_FOUND")
		ts.do(t, http.MethodPost, "/_matrix/client/v3/room_keys/version", tok, map[string]any{"algorithm": alg, "auth_data": map[string]any{}})
		// All rooms at once.
		r := ts.do(t, http.MethodPut, "/_matrix/client/v3/room_keys/keys?version=1", tok, map[string]any{"rooms": map[string]any{
			room:                map[string]any{"sessions": map[string]any{"s1": sessionKey(5, 1, false, "a"), "s2": sessionKey(0, 0, true, "b")}},
			"!other:test.local": map[string]any{"sessions": map[string]any{"s3": sessionKey(0, 0, false, "c")}},
		}})
		wantStatus(t, r, http.StatusOK, "")
		if r.Body["count"] != float64(3) {
			t.Fatalf("put all: %s", r.Raw)
		}
		etag1 := r.Body["etag"]
		// A worse copy of s1 (higher first_message_index) is ignored: the
		// etag stays.
		r = ts.do(t, http.MethodPut, roomPath+"/s1?version=1", tok, sessionKey(9, 0, false, "worse"))
		wantStatus(t, r, http.StatusOK, "")
		if r.Body["etag"] != etag1 || r.Body["count"] != float64(3) {
			t.Fatalf("worse key changed the backup: %s (etag was %v)", r.Raw, etag1)
		}
		// A verified copy replaces it.
		r = ts.do(t, http.MethodPut, roomPath+"?version=1", tok, map[string]any{"sessions": map[string]any{"s1": sessionKey(7, 3, true, "better")}})
		wantStatus(t, r, http.StatusOK, "")
		if r.Body["etag"] == etag1 {
			t.Fatalf("a better key did not change the etag: %s", r.Raw)
		}
		r = ts.do(t, http.MethodGet, roomPath+"/s1?version=1", tok, nil)
		wantStatus(t, r, http.StatusOK, "")
		if r.Body["is_verified"] != true || r.Body["first_message_index"] != float64(7) || r.Body["session_data"].(map[string]any)["ephemeral"] != "better" {
			t.Fatalf("session s1: %s", r.Raw)
		}
		r = ts.do(t, http.MethodGet, roomPath+"?version=1", tok, nil)
		if ss := r.Body["sessions"].(map[string]any); len(ss) != 2 {
			t.Fatalf("room: %s", r.Raw)
		}
		r = ts.do(t, http.MethodGet, "/_matrix/client/v3/room_keys/keys?version=1", tok, nil)
		if rooms := r.Body["rooms"].(map[string]any); len(rooms) != 2 {
			t.Fatalf("all: %s", r.Raw)
		}
		// Version checks.
		wantStatus(t, ts.do(t, http.MethodGet, roomPath+"/nope?version=1", tok, nil), http.StatusNotFound, "M_NOT_FOUND")
		wantStatus(t, ts.do(t, http.MethodGet, roomPath+"?version=9", tok, nil), http.StatusNotFound, "M_NOT_FOUND")
		wantStatus(t, ts.do(t, http.MethodGet, roomPath, tok, nil), http.StatusBadRequest, "M_MISSING_PARAM")
		ts.do(t, http.MethodPost, "/_matrix/client/v3/room_keys/version", tok, map[string]any{"algorithm": alg, "auth_data": map[string]any{}})
		r = ts.do(t, http.MethodPut, roomPath+"/s9?version=1", tok, sessionKey(0, 0, false, "old"))
		wantStatus(t, r, http.StatusForbidden, "M_WRONG_ROOM_KEYS_VERSION")
		if r.Body["current_version"] != "2" {
			t.Fatalf("wrong version answer: %s", r.Raw)
		}
		// Bad key data changes nothing.
		wantStatus(t, ts.do(t, http.MethodPut, roomPath+"/s9?version=2", tok, map[string]any{"first_message_index": 0}), http.StatusBadRequest, "M_MISSING_PARAM")
		wantStatus(t, ts.do(t, http.MethodPut, roomPath+"/s9?version=2", tok, "[1]"), http.StatusBadRequest, "M_BAD_JSON")
		if r := ts.do(t, http.MethodGet, "/_matrix/client/v3/room_keys/version", tok, nil); r.Body["count"] != float64(0) {
			t.Fatalf("bad writes stored keys: %s", r.Raw)
		}
		// Old version 1 can still be read and its keys deleted.
		r = ts.do(t, http.MethodDelete, roomPath+"/s2?version=1", tok, nil)
		wantStatus(t, r, http.StatusOK, "")
		if r.Body["count"] != float64(2) {
			t.Fatalf("delete session: %s", r.Raw)
		}
		r = ts.do(t, http.MethodDelete, "/_matrix/client/v3/room_keys/keys?version=1", tok, nil)
		if r.Body["count"] != float64(0) {
			t.Fatalf("delete all: %s", r.Raw)
		}
		if r := ts.do(t, http.MethodGet, "/_matrix/client/v3/room_keys/version/1", tok, nil); r.Body["count"] != float64(0) {
			t.Fatalf("version 1 after deletes: %s", r.Raw)
		}
	})
}

// FuzzParseRoomKeys: any body at any level gives keys or a Matrix error.
func FuzzParseRoomKeys(f *testing.F) {
	f.Add([]byte(`{"rooms":{"!r":{"sessions":{"s":{"first_message_index":1,"forwarded_count":0,"is_verified":false,"session_data":{}}}}}}`), uint8(0))
	f.Add([]byte(`{"sessions":{"s":{"first_message_index":-1}}}`), uint8(1))
	f.Add([]byte(`{"first_message_index":1,"forwarded_count":0,"is_verified":true,"session_data":[]}`), uint8(2))
	f.Fuzz(func(t *testing.T, body []byte, level uint8) {
		room, session := "", ""
		switch level % 3 {
		case 1:
			room = "!r"
		case 2:
			room, session = "!r", "s"
		}
		keys, err := parseRoomKeys(body, room, session)
		if err != nil {
			if _, ok := err.(*MatrixError); !ok {
				t.Fatalf("non-Matrix error %T", err)
			}
			return
		}
		for _, k := range keys {
			if k.RoomID == "" || k.SessionID == "" || k.FirstMessageIndex < 0 || len(k.SessionData) == 0 {
				t.Fatalf("accepted a bad key %+v", k)
			}
		}
	})
}
