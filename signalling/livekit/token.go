package livekit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// Homeserver is what the token service needs from the homeserver.
// *homeserver.Server satisfies it.
type Homeserver interface {
	// OpenIDUserInfo resolves an OpenID token this server issued.
	OpenIDUserInfo(ctx context.Context, token string) (userID string, err error)
	// RemoteOpenIDUserInfo asks serverName who its OpenID token belongs
	// to (federation /openid/userinfo); the answer is a user of
	// serverName.
	RemoteOpenIDUserInfo(ctx context.Context, serverName, token string) (userID string, err error)
	// InRoomForRTC reports whether userID is joined to roomID and this
	// server is in the room.
	InRoomForRTC(ctx context.Context, roomID, userID string) (bool, error)
}

// TokenConfig configures a TokenService.
type TokenConfig struct {
	// Homeserver checks OpenID tokens and room membership. Required.
	Homeserver Homeserver
	// ServerName is this homeserver's name: OpenID tokens naming it are
	// checked locally. Required.
	ServerName string
	// APIKey and APISecret sign the access tokens; the signalling Server
	// must be given the same. Required; the secret at least 32 bytes.
	APIKey, APISecret string
	// SFUURL is the WebSocket URL handed to clients, where Server serves
	// (livekit-client appends /rtc). Required, ws:// or wss://.
	SFUURL string
	// TokenTTL is how long an access token is good for joining. Default
	// one hour (as lk-jwt-service).
	TokenTTL time.Duration
	// MaxBodyBytes bounds a token request body. Default 16,384.
	MaxBodyBytes int64
	// CheckTimeout bounds the OpenID and membership checks of a request.
	// Default 15 s.
	CheckTimeout time.Duration
	// Logger receives client mistakes at Info, failures at Warn. Default
	// slog.Default().
	Logger *slog.Logger
	// Delegate, if set, takes over a local member's delayed leave named by
	// a request's delay_id (MSC4195's delegation through the token
	// service, as lk-jwt-service does it): the homeserver restarts it
	// while the member is on the SFU and sends it once the member is
	// gone. It returns ErrDelegation (wrapped) for a delayed event it
	// refuses. Without it, delay fields are ignored.
	Delegate func(ctx context.Context, m MatrixMember, delayID string) error
}

func (c *TokenConfig) validateAndDefault() error {
	switch {
	case c.Homeserver == nil:
		return fmt.Errorf("%w: no homeserver", ErrInvalidConfig)
	case c.ServerName == "":
		return fmt.Errorf("%w: no server name", ErrInvalidConfig)
	case c.APIKey == "" || len(c.APISecret) < 32:
		return fmt.Errorf("%w: API key missing or secret shorter than 32 bytes", ErrInvalidConfig)
	case !strings.HasPrefix(c.SFUURL, "ws://") && !strings.HasPrefix(c.SFUURL, "wss://"):
		return fmt.Errorf("%w: SFU URL %q is not ws:// or wss://", ErrInvalidConfig, c.SFUURL)
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = time.Hour
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 16 << 10
	}
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// TokenService is the MatrixRTC LiveKit authorisation service (MSC4195):
// it trades a Matrix OpenID token for a LiveKit access token. It serves
// POST {prefix}/sfu/get (the legacy request: room, openid_token,
// device_id) and POST {prefix}/get_token (room_id, slot_id, openid_token,
// member), both answering {"url", "jwt"}, with CORS for browsers. Either
// may carry delay_id (with delay_timeout and delay_cs_api_url): the
// member's delayed leave, handed to TokenConfig.Delegate.
type TokenService struct {
	cfg  TokenConfig
	keys keys
	log  *slog.Logger
}

// NewTokenService validates cfg and returns the service.
func NewTokenService(cfg TokenConfig) (*TokenService, error) {
	if err := cfg.validateAndDefault(); err != nil {
		return nil, err
	}
	return &TokenService{cfg: cfg, keys: keys{cfg.APIKey, cfg.APISecret},
		log: cfg.Logger.With("component", "livekit-token")}, nil
}

// openIDToken is the token of POST /user/{userId}/openid/request_token
// (Client-Server API, "OpenID"), as clients pass it on.
type openIDToken struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	MatrixServerName string `json:"matrix_server_name"`
	ExpiresIn        int64  `json:"expires_in"`
}

// delayFields hand a member's delayed leave (MSC4140) to the service
// (MSC4195 delegation; Element Call 0.26 sends them on /get_token and
// /sfu/get). delay_cs_api_url is the member's homeserver and
// delay_timeout the event's delay; a local member's delayed event is in
// this server's own database, so only delay_id is needed.
type delayFields struct {
	DelayID       string `json:"delay_id"`
	DelayTimeout  int64  `json:"delay_timeout"`
	DelayCSAPIURL string `json:"delay_cs_api_url"`
}

// legacyRequest is the body of /sfu/get.
type legacyRequest struct {
	Room        string      `json:"room"`
	OpenIDToken openIDToken `json:"openid_token"`
	DeviceID    string      `json:"device_id"`
	delayFields
}

// tokenRequest is the body of /get_token (MSC4195 with MatrixRTC slots).
type tokenRequest struct {
	RoomID      string      `json:"room_id"`
	SlotID      string      `json:"slot_id"`
	OpenIDToken openIDToken `json:"openid_token"`
	Member      struct {
		ID              string `json:"id"`
		ClaimedUserID   string `json:"claimed_user_id"`
		ClaimedDeviceID string `json:"claimed_device_id"`
	} `json:"member"`
	delayFields
}

// tokenGrant is a checked request: who gets a token for what.
type tokenGrant struct {
	userID, deviceID, roomID, identity, alias string
	slotID, memberID                          string
	// delayID is the member's delayed leave to take over ("" for none);
	// local reports a member of this server.
	delayID string
	local   bool
}

func (g tokenGrant) member() MatrixMember {
	return MatrixMember{RoomID: g.roomID, UserID: g.userID, DeviceID: g.deviceID, SlotID: g.slotID, MemberID: g.memberID}
}

// ServeHTTP routes /sfu/get and /get_token (by path suffix, so the
// service can sit under any prefix) and answers CORS preflights.
func (t *TokenService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Requested-With")
	h.Set("Access-Control-Max-Age", "86400")
	legacy := strings.HasSuffix(r.URL.Path, "/sfu/get")
	if !legacy && !strings.HasSuffix(r.URL.Path, "/get_token") {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "no such endpoint")
		return
	}
	switch r.Method {
	case http.MethodOptions:
		w.WriteHeader(http.StatusOK)
		return
	case http.MethodPost:
	default:
		h.Set("Allow", "POST, OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "use POST")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, t.cfg.MaxBodyBytes))
	if err != nil {
		t.refuse(w, r, fmt.Errorf("%w: reading body: %w", ErrBadRequest, err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), t.cfg.CheckTimeout)
	defer cancel()
	var g tokenGrant
	if legacy {
		g, err = t.checkLegacy(ctx, body)
	} else {
		g, err = t.checkToken(ctx, body)
	}
	if err != nil {
		t.refuse(w, r, err)
		return
	}
	if err := t.delegate(ctx, g); err != nil {
		t.refuse(w, r, err)
		return
	}
	jwt, err := t.keys.mint(g.identity, g.alias, t.cfg.TokenTTL, g.member())
	if err != nil {
		t.log.Error("signing access token", "err", err)
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "could not sign a token")
		return
	}
	t.log.Info("access token issued", "user_id", g.userID, "room_id", g.roomID, "livekit_room", g.alias,
		"identity", g.identity)
	h.Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"url": t.cfg.SFUURL, "jwt": jwt})
}

// delegate hands a granted member's delayed leave to the homeserver.
// A remote member's delayed event lives on its own homeserver, which this
// server cannot restart for it: the token is issued without delegation
// (the member's own refreshes keep its membership, as without a token
// service that delegates) and the log says so.
func (t *TokenService) delegate(ctx context.Context, g tokenGrant) error {
	if g.delayID == "" || t.cfg.Delegate == nil {
		return nil
	}
	if !g.local {
		t.log.Info("delayed leave of a remote member not delegated", "user_id", g.userID, "room_id", g.roomID)
		return nil
	}
	if err := t.cfg.Delegate(ctx, g.member(), g.delayID); err != nil {
		return err
	}
	t.log.Info("delayed leave delegated", "user_id", g.userID, "room_id", g.roomID, "delay_id", g.delayID)
	return nil
}

// refuse answers a refused request with the Matrix error lk-jwt-service
// gives for it.
func (t *TokenService) refuse(w http.ResponseWriter, r *http.Request, err error) {
	t.log.Info("token request refused", "path", r.URL.Path, "err", err)
	switch {
	case errors.Is(err, ErrBadRequest):
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "request body too large")
			return
		}
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", err.Error())
	case errors.Is(err, ErrUnauthorized):
		writeError(w, http.StatusUnauthorized, "M_UNAUTHORIZED", "The request could not be authorised.")
	case errors.Is(err, ErrNotInRoom):
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "You are not joined to this room on this server.")
	case errors.Is(err, ErrDelegation):
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", err.Error())
	default:
		t.log.Warn("token request failed", "err", err)
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "could not check the request")
	}
}

func writeError(w http.ResponseWriter, status int, errcode, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"errcode": errcode, "error": msg})
}

// decodeStrict parses one JSON object into v: unknown fields are allowed
// (clients add them), trailing data is not.
func decodeStrict(body []byte, v any) error {
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: body is not UTF-8", ErrBadRequest)
	}
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if d.More() {
		return fmt.Errorf("%w: data after the JSON object", ErrBadRequest)
	}
	return nil
}

// validID bounds an identifier from a request: non-empty, at most 255
// bytes (the Matrix limit on IDs), no control characters.
func validID(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func validRoomID(s string) bool { return validID(s) && strings.HasPrefix(s, "!") }

func (t *TokenService) checkLegacy(ctx context.Context, body []byte) (tokenGrant, error) {
	var req legacyRequest
	if err := decodeStrict(body, &req); err != nil {
		return tokenGrant{}, err
	}
	if !validRoomID(req.Room) {
		return tokenGrant{}, fmt.Errorf("%w: room is not a room ID", ErrBadRequest)
	}
	if !validID(req.DeviceID) {
		return tokenGrant{}, fmt.Errorf("%w: missing or invalid device_id", ErrBadRequest)
	}
	if req.DelayID != "" && !validID(req.DelayID) {
		return tokenGrant{}, fmt.Errorf("%w: invalid delay_id", ErrBadRequest)
	}
	userID, err := t.checkUser(ctx, req.OpenIDToken, "", req.Room)
	if err != nil {
		return tokenGrant{}, err
	}
	return tokenGrant{userID: userID, deviceID: req.DeviceID, roomID: req.Room, identity: userID + ":" + req.DeviceID,
		alias: RoomAlias(req.Room, legacySlot), slotID: legacySlot,
		delayID: req.DelayID, local: req.OpenIDToken.MatrixServerName == t.cfg.ServerName}, nil
}

func (t *TokenService) checkToken(ctx context.Context, body []byte) (tokenGrant, error) {
	var req tokenRequest
	if err := decodeStrict(body, &req); err != nil {
		return tokenGrant{}, err
	}
	if !validRoomID(req.RoomID) || !validID(req.SlotID) {
		return tokenGrant{}, fmt.Errorf("%w: missing or invalid room_id or slot_id", ErrBadRequest)
	}
	m := req.Member
	if !validID(m.ID) || !validID(m.ClaimedUserID) || !validID(m.ClaimedDeviceID) {
		return tokenGrant{}, fmt.Errorf("%w: member needs id, claimed_user_id and claimed_device_id", ErrBadRequest)
	}
	if req.DelayID != "" && !validID(req.DelayID) {
		return tokenGrant{}, fmt.Errorf("%w: invalid delay_id", ErrBadRequest)
	}
	userID, err := t.checkUser(ctx, req.OpenIDToken, m.ClaimedUserID, req.RoomID)
	if err != nil {
		return tokenGrant{}, err
	}
	return tokenGrant{userID: userID, deviceID: m.ClaimedDeviceID, roomID: req.RoomID,
		identity: memberIdentity(userID, m.ClaimedDeviceID, m.ID),
		alias:    RoomAlias(req.RoomID, req.SlotID), slotID: req.SlotID, memberID: m.ID,
		delayID: req.DelayID, local: req.OpenIDToken.MatrixServerName == t.cfg.ServerName}, nil
}

// checkUser resolves the OpenID token to a user (through the user's own
// server), matches it against the claimed user if any, and checks that
// the user is joined to roomID as this server sees it: a server that is
// not in the room knows no joined member of it.
func (t *TokenService) checkUser(ctx context.Context, tok openIDToken, claimed, roomID string) (string, error) {
	if !validID(tok.AccessToken) || !validID(tok.MatrixServerName) {
		return "", fmt.Errorf("%w: openid_token needs access_token and matrix_server_name", ErrBadRequest)
	}
	var userID string
	var err error
	if tok.MatrixServerName == t.cfg.ServerName {
		userID, err = t.cfg.Homeserver.OpenIDUserInfo(ctx, tok.AccessToken)
	} else {
		userID, err = t.cfg.Homeserver.RemoteOpenIDUserInfo(ctx, tok.MatrixServerName, tok.AccessToken)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	if claimed != "" && claimed != userID {
		return "", fmt.Errorf("%w: token of %s, request claims %s", ErrUnauthorized, userID, claimed)
	}
	ok, err := t.cfg.Homeserver.InRoomForRTC(ctx, roomID, userID)
	if err != nil {
		return "", fmt.Errorf("membership of %s in %s: %w", userID, roomID, err)
	}
	if !ok {
		return "", fmt.Errorf("%w: %s in %s", ErrNotInRoom, userID, roomID)
	}
	return userID, nil
}

// IssueFor signs an access token for a member the caller has already
// authenticated and checked (the homeserver's own MSC4195 get_token
// endpoint: the user's access token stands in for the OpenID token, and
// the homeserver checked the room membership). The identity and room
// are those /get_token gives the same member, so both paths land in one
// LiveKit room.
func (t *TokenService) IssueFor(m MatrixMember) (jwt string, err error) {
	if !validRoomID(m.RoomID) || !validID(m.UserID) || !validID(m.DeviceID) || !validID(m.SlotID) || !validID(m.MemberID) {
		return "", fmt.Errorf("%w: member needs room, user, device, slot and member IDs", ErrBadRequest)
	}
	return t.keys.mint(memberIdentity(m.UserID, m.DeviceID, m.MemberID), RoomAlias(m.RoomID, m.SlotID), t.cfg.TokenTTL, m)
}

// SFUURL is the WebSocket URL the service hands out with its tokens.
func (t *TokenService) SFUURL() string { return t.cfg.SFUURL }
