package homeserver

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	hsync "github.com/switchboard-chat/switchboard/homeserver/sync"
)

// End-to-end encryption key endpoints (spec: Client-Server API, "End-to-End
// Encryption", "Key management API" and "Cross-signing"). Only local
// users' keys are served; remote users are reported in "failures" until
// federation queries exist.

// maxKeysPerUpload bounds one upload's one-time plus fallback keys.
const maxKeysPerUpload = 1000

// keysUpload implements POST /keys/upload.
func (s *Server) keysUpload(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	me := device(c)
	up, err := parseKeysUpload(body, me.UserID, me.DeviceID)
	if err != nil {
		return err
	}
	counts, err := s.db.UploadKeys(c.Request().Context(), me.UserID, me.DeviceID, up)
	if errors.Is(err, storage.ErrKeyConflict) {
		return errInvalidParam("%v", err)
	}
	if err != nil {
		return err
	}
	if _, ok := counts["signed_curve25519"]; !ok {
		counts["signed_curve25519"] = 0
	}
	return c.JSON(http.StatusOK, map[string]any{"one_time_key_counts": counts})
}

// parseKeysUpload validates a /keys/upload body for device deviceID of
// userID. Device keys must name that user and device; key IDs must read
// "<algorithm>:<id>" and keys must be strings or objects.
func parseKeysUpload(body []byte, userID, deviceID string) (storage.KeyUpload, error) {
	var req struct {
		DeviceKeys           json.RawMessage            `json:"device_keys"`
		OneTimeKeys          map[string]json.RawMessage `json:"one_time_keys"`
		FallbackKeys         map[string]json.RawMessage `json:"fallback_keys"`
		UnstableFallbackKeys map[string]json.RawMessage `json:"org.matrix.msc2732.fallback_keys"`
	}
	if err := decodeBody(body, &req); err != nil {
		return storage.KeyUpload{}, err
	}
	var up storage.KeyUpload
	if len(req.DeviceKeys) > 0 && string(req.DeviceKeys) != "null" {
		var dk struct {
			UserID     string                       `json:"user_id"`
			DeviceID   string                       `json:"device_id"`
			Algorithms []string                     `json:"algorithms"`
			Keys       map[string]string            `json:"keys"`
			Signatures map[string]map[string]string `json:"signatures"`
		}
		if err := json.Unmarshal(req.DeviceKeys, &dk); err != nil {
			return storage.KeyUpload{}, errBadJSON("device_keys: %v", err)
		}
		if dk.UserID != userID || dk.DeviceID != deviceID {
			return storage.KeyUpload{}, errInvalidParam("device_keys must be for user %s and device %s", userID, deviceID)
		}
		if len(dk.Keys) == 0 {
			return storage.KeyUpload{}, errMissingParam("device_keys.keys is required")
		}
		obj, err := withoutMember(req.DeviceKeys, "unsigned")
		if err != nil {
			return storage.KeyUpload{}, errBadJSON("device_keys: %v", err)
		}
		up.DeviceKeys = obj
	}
	if len(req.OneTimeKeys)+len(req.FallbackKeys)+len(req.UnstableFallbackKeys) > maxKeysPerUpload {
		return storage.KeyUpload{}, errInvalidParam("at most %d keys per upload", maxKeysPerUpload)
	}
	var err error
	if up.OneTimeKeys, err = checkKeyMap("one_time_keys", req.OneTimeKeys); err != nil {
		return storage.KeyUpload{}, err
	}
	fallback := req.FallbackKeys
	if fallback == nil {
		fallback = req.UnstableFallbackKeys
	}
	if up.FallbackKeys, err = checkKeyMap("fallback_keys", fallback); err != nil {
		return storage.KeyUpload{}, err
	}
	if len(up.FallbackKeys) > 0 {
		algs := map[string]bool{}
		for id := range up.FallbackKeys {
			alg := id[:strings.IndexByte(id, ':')]
			if algs[alg] {
				return storage.KeyUpload{}, errInvalidParam("fallback_keys holds one key per algorithm")
			}
			algs[alg] = true
		}
	}
	return up, nil
}

func checkKeyMap(field string, m map[string]json.RawMessage) (map[string][]byte, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string][]byte, len(m))
	for id, key := range m {
		i := strings.IndexByte(id, ':')
		if i <= 0 || i == len(id)-1 || len(id) > 255 {
			return nil, errInvalidParam("%s: key ID %q is not <algorithm>:<id>", field, id)
		}
		k := strings.TrimSpace(string(key))
		if k == "" || (k[0] != '"' && k[0] != '{') {
			return nil, errBadJSON("%s: key %q must be a string or an object", field, id)
		}
		out[id] = []byte(k)
	}
	return out, nil
}

// withoutMember returns a JSON object with one member removed.
func withoutMember(obj json.RawMessage, name string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	delete(m, name)
	return json.Marshal(m)
}

// decodeBody decodes a JSON request body the way readJSON does: an empty
// body is {}, invalid JSON is M_NOT_JSON, a wrong shape M_BAD_JSON.
func decodeBody(body []byte, v any) error {
	if strings.TrimSpace(string(body)) == "" {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		return errNotJSON("Content not JSON.")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errBadJSON("%v", err)
	}
	return nil
}

// serverOf is the server name part of a user ID.
func serverOf(userID string) string {
	if i := strings.IndexByte(userID, ':'); i >= 0 {
		return userID[i+1:]
	}
	return ""
}

func (s *Server) isLocal(userID string) bool {
	return strings.HasPrefix(userID, "@") && serverOf(userID) == s.cfg.ServerName
}

// keysQuery implements POST /keys/query.
func (s *Server) keysQuery(c echo.Context) error {
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if req.DeviceKeys == nil {
		return errMissingParam("device_keys is required")
	}
	ctx := c.Request().Context()
	me := device(c).UserID
	devices := map[string]map[string]json.RawMessage{}
	masters, selfs, users := map[string]json.RawMessage{}, map[string]json.RawMessage{}, map[string]json.RawMessage{}
	failures := map[string]any{}
	remote := map[string]map[string][]string{}
	for userID, ids := range req.DeviceKeys {
		if !s.isLocal(userID) {
			if srv := serverOf(userID); srv != "" {
				if remote[srv] == nil {
					remote[srv] = map[string][]string{}
				}
				remote[srv][userID] = ids
			}
			continue
		}
		keys, err := s.db.QueryDeviceKeys(ctx, userID, ids)
		if err != nil {
			return err
		}
		byDevice := map[string]json.RawMessage{}
		for _, k := range keys {
			obj, err := k.WithUnsigned()
			if err != nil {
				s.log.Warn("stored device keys are not an object", "user_id", userID, "device_id", k.DeviceID, "err", err)
				continue
			}
			byDevice[k.DeviceID] = obj
		}
		devices[userID] = byDevice
		cross, err := s.db.CrossSigningKeys(ctx, userID)
		if err != nil {
			return err
		}
		if k, ok := cross[storage.CrossSigningMaster]; ok {
			masters[userID] = k
		}
		if k, ok := cross[storage.CrossSigningSelfSigning]; ok {
			selfs[userID] = k
		}
		// A user-signing key is only ever shown to its owner.
		if k, ok := cross[storage.CrossSigningUserSigning]; ok && userID == me {
			users[userID] = k
		}
	}
	// Users of other servers: asked over federation (federation_client_proxy.go).
	s.queries.QueryKeys(ctx, remote, devices, masters, selfs, failures)
	return c.JSON(http.StatusOK, map[string]any{
		"device_keys":       devices,
		"master_keys":       masters,
		"self_signing_keys": selfs,
		"user_signing_keys": users,
		"failures":          failures,
	})
}

// keysClaim implements POST /keys/claim.
func (s *Server) keysClaim(c echo.Context) error {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if req.OneTimeKeys == nil {
		return errMissingParam("one_time_keys is required")
	}
	failures := map[string]any{}
	var claims []storage.KeyClaim
	remote := map[string]map[string]map[string]string{}
	for userID, devs := range req.OneTimeKeys {
		if !s.isLocal(userID) {
			if srv := serverOf(userID); srv != "" {
				if remote[srv] == nil {
					remote[srv] = map[string]map[string]string{}
				}
				remote[srv][userID] = devs
			}
			continue
		}
		for dev, alg := range devs {
			claims = append(claims, storage.KeyClaim{UserID: userID, DeviceID: dev, Algorithm: alg})
		}
	}
	keys, err := s.db.ClaimKeys(c.Request().Context(), claims)
	if err != nil {
		return err
	}
	out := storage.ClaimedByDevice(keys)
	s.queries.ClaimKeys(c.Request().Context(), remote, out, failures)
	return c.JSON(http.StatusOK, map[string]any{"one_time_keys": out, "failures": failures})
}

// keysChanges implements GET /keys/changes: the users sharing a room with
// the caller (and the caller) whose device lists changed between two /sync
// tokens. "left" is always empty: it needs membership history per token
// range, which /sync's device_lists.left already carries.
func (s *Server) keysChanges(c echo.Context) error {
	fromTok, toTok := c.QueryParam("from"), c.QueryParam("to")
	if fromTok == "" {
		return errMissingParam("from is required")
	}
	from, err := hsync.ParseToken(fromTok)
	if err != nil {
		return errInvalidParam("from is not a sync token")
	}
	ctx := c.Request().Context()
	var to hsync.Token
	if toTok == "" {
		pos, err := s.db.MaxPos(ctx)
		if err != nil {
			return err
		}
		to.Set(hsync.StreamDeviceLists, pos)
	} else if to, err = hsync.ParseToken(toTok); err != nil {
		return errInvalidParam("to is not a sync token")
	}
	me := device(c).UserID
	changed, err := s.db.DeviceListChangesBetween(ctx, from.Get(hsync.StreamDeviceLists), to.Get(hsync.StreamDeviceLists))
	if err != nil {
		return err
	}
	shared, err := s.db.UsersSharingRooms(ctx, me)
	if err != nil {
		return err
	}
	visible := map[string]bool{me: true}
	for _, u := range shared {
		visible[u] = true
	}
	out := []string{}
	for _, u := range changed {
		if visible[u] {
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return c.JSON(http.StatusOK, map[string]any{"changed": out, "left": []string{}})
}

// crossSigningKey is the part of a cross-signing key object we check.
type crossSigningKey struct {
	UserID string            `json:"user_id"`
	Usage  []string          `json:"usage"`
	Keys   map[string]string `json:"keys"`
}

// parseCrossSigningKey validates one key of /keys/device_signing/upload.
func parseCrossSigningKey(raw json.RawMessage, userID, usage string) ([]byte, error) {
	var k crossSigningKey
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, errBadJSON("%s_key: %v", usage, err)
	}
	if k.UserID != userID {
		return nil, errInvalidParam("%s_key must be for user %s", usage, userID)
	}
	if !slices.Contains(k.Usage, usage) {
		return nil, errInvalidParam("%s_key must have usage %q", usage, usage)
	}
	if len(k.Keys) != 1 {
		return nil, errInvalidParam("%s_key must hold exactly one key", usage)
	}
	for id, pub := range k.Keys {
		if !strings.HasPrefix(id, "ed25519:") || pub == "" {
			return nil, errInvalidParam("%s_key must be an ed25519 key", usage)
		}
	}
	return raw, nil
}

// deviceSigningUpload implements POST /keys/device_signing/upload. As
// spec v1.11 says, user-interactive auth is needed unless the user has no
// master key yet or sends exactly the stored one. Signatures of the
// self-signing and user-signing keys by the master key are not verified.
func (s *Server) deviceSigningUpload(c echo.Context) error {
	var req struct {
		MasterKey      json.RawMessage `json:"master_key"`
		SelfSigningKey json.RawMessage `json:"self_signing_key"`
		UserSigningKey json.RawMessage `json:"user_signing_key"`
		Auth           *authDict       `json:"auth"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	me := device(c).UserID
	keys := map[string][]byte{}
	for _, k := range []struct {
		usage string
		raw   json.RawMessage
	}{{storage.CrossSigningMaster, req.MasterKey}, {storage.CrossSigningSelfSigning, req.SelfSigningKey}, {storage.CrossSigningUserSigning, req.UserSigningKey}} {
		if len(k.raw) == 0 || string(k.raw) == "null" {
			continue
		}
		key, err := parseCrossSigningKey(k.raw, me, k.usage)
		if err != nil {
			return err
		}
		keys[k.usage] = key
	}
	ctx := c.Request().Context()
	stored, err := s.db.CrossSigningKeys(ctx, me)
	if err != nil {
		return err
	}
	oldMaster, hasMaster := stored[storage.CrossSigningMaster]
	if !hasMaster && keys[storage.CrossSigningMaster] == nil && len(keys) > 0 {
		return errMissingParam("master_key is required for the first upload")
	}
	if hasMaster && (keys[storage.CrossSigningMaster] == nil || !sameKeyJSON(oldMaster, keys[storage.CrossSigningMaster])) {
		if err := s.checkPasswordUIA(c, req.Auth, me); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return c.JSON(http.StatusOK, struct{}{})
	}
	if err := s.db.PutCrossSigningKeys(ctx, me, keys); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

// sameKeyJSON reports whether two JSON texts hold the same value.
func sameKeyJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ja, _ := json.Marshal(va) // encoding/json sorts object keys
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}

// signaturesUpload implements POST /keys/signatures/upload: signatures the
// caller made are merged into the signed device or cross-signing keys of
// local users. Signatures are stored, not verified; clients verify them.
// Other users' devices cannot be signed (only their master key can).
func (s *Server) signaturesUpload(c echo.Context) error {
	var req map[string]map[string]json.RawMessage
	if err := readJSON(c, &req); err != nil {
		return err
	}
	me := device(c).UserID
	ctx := c.Request().Context()
	failures := map[string]map[string]any{}
	fail := func(user, key, code, msg string) {
		if failures[user] == nil {
			failures[user] = map[string]any{}
		}
		failures[user][key] = map[string]string{"errcode": code, "error": msg}
	}
	for userID, byKey := range req {
		for keyID, raw := range byKey {
			var obj struct {
				Signatures map[string]map[string]string `json:"signatures"`
			}
			if err := json.Unmarshal(raw, &obj); err != nil || len(obj.Signatures[me]) == 0 {
				fail(userID, keyID, "M_INVALID_SIGNATURE", "No signature by the uploading user")
				continue
			}
			if !s.isLocal(userID) {
				fail(userID, keyID, "M_UNRECOGNIZED", "Signatures of remote keys are not supported yet")
				continue
			}
			if userID != me {
				if _, err := s.db.DeviceByID(ctx, userID, keyID); err == nil {
					fail(userID, keyID, "M_FORBIDDEN", "Only a user's master key can be signed by others")
					continue
				}
			}
			err := s.db.AddSignatures(ctx, userID, keyID, map[string]map[string]string{me: obj.Signatures[me]})
			if errors.Is(err, storage.ErrNotFound) {
				fail(userID, keyID, "M_NOT_FOUND", "Unknown key")
				continue
			}
			if err != nil {
				return err
			}
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"failures": failures})
}
