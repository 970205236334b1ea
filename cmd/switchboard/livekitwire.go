package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/switchboard-chat/switchboard/homeserver"
	"github.com/switchboard-chat/switchboard/sfu"
	"github.com/switchboard-chat/switchboard/signalling/livekit"
)

// The LiveKit side of MatrixRTC on the client listener:
//
//	<public base URL>/livekit/jwt   livekit_service_url (MSC4195): /sfu/get, /get_token
//	ws(s)://<public base>/livekit/sfu   the SFU URL in the token answer;
//	                                    livekit-client connects to /livekit/sfu/rtc/v1
const (
	liveKitJWTPath    = "/livekit/jwt"
	liveKitSFUPath    = "/livekit/sfu"
	liveKitSecretName = "livekit.secret"
	liveKitAPIKey     = "switchboard"
)

// liveKit is the token service and the signalling server.
type liveKit struct {
	tokens *livekit.TokenService
	sig    *livekit.Server
}

// startLiveKit creates the token service and the LiveKit signalling
// server over node, with the access-token secret generated into the data
// directory on first start. baseURL is the client API's public URL.
// peers names the native focus's participants sharing a room's conference.
func startLiveKit(cfg *Config, baseURL string, hs *homeserver.Server, node *sfu.SFU, peers livekit.PeerDirectory,
	log *slog.Logger) (*liveKit, error) {
	secret, created, err := loadOrCreateSecret(filepath.Join(cfg.DataDir, liveKitSecretName))
	if err != nil {
		return nil, fmt.Errorf("livekit secret: %w", err)
	}
	if created {
		log.Info("generated the LiveKit access-token secret", "path", filepath.Join(cfg.DataDir, liveKitSecretName))
	}
	base := strings.TrimRight(baseURL, "/")
	wsURL := liveKitWSURL(base)
	tokens, err := livekit.NewTokenService(livekit.TokenConfig{Homeserver: hs, ServerName: cfg.ServerName,
		APIKey: liveKitAPIKey, APISecret: secret, SFUURL: wsURL, Logger: log, Delegate: delegateLeave(hs)})
	if err != nil {
		return nil, fmt.Errorf("livekit token service: %w", err)
	}
	sig, err := livekit.NewServer(livekit.ServerConfig{SFU: node, APIKey: liveKitAPIKey, APISecret: secret,
		RoomState: hs, Presence: hsPresence{hs}, Peers: peers, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("livekit signalling: %w", err)
	}
	log.Info("MatrixRTC: livekit_service_url "+base+liveKitJWTPath, "livekit_service_url", base+liveKitJWTPath,
		"livekit_sfu_url", wsURL)
	return &liveKit{tokens: tokens, sig: sig}, nil
}

// routes mounts the two on the client listener's mux.
func (l *liveKit) routes(mux *http.ServeMux) {
	mux.Handle(liveKitJWTPath+"/", l.tokens)
	mux.Handle(liveKitSFUPath+"/", l.sig)
}

// stop disconnects every LiveKit client; it runs before the SFU closes.
func (l *liveKit) stop() {
	if l != nil {
		l.sig.Close()
	}
}

// liveKitWSURL is the SFU URL the token service hands out for the client
// API at baseURL; the homeserver's RTCConfig.LiveKitURLs carries it too,
// so delegate_delayed_leave and get_token (MSC4195) accept it.
func liveKitWSURL(baseURL string) string {
	return "ws" + strings.TrimPrefix(strings.TrimRight(baseURL, "/"), "http") + liveKitSFUPath
}

// rtcParticipant maps the Matrix member a LiveKit token was issued to
// onto the homeserver's MatrixRTC participant: the token's slot
// ("m.call#ROOM" from /sfu/get) and member ID (the m.rtc.member event's
// member.id, empty from /sfu/get, which then matches any member of the
// device).
func rtcParticipant(m livekit.MatrixMember) homeserver.RTCParticipant {
	return homeserver.RTCParticipant{UserID: m.UserID, RoomID: m.RoomID, SlotID: m.SlotID,
		MemberID: m.MemberID, DeviceID: m.DeviceID}
}

// delegateLeave hands a member's delayed leave, named in a token request,
// to the homeserver (MSC4195); the homeserver's refusals (4xx) become
// livekit.ErrDelegation, so the token service answers them as such.
func delegateLeave(hs *homeserver.Server) func(context.Context, livekit.MatrixMember, string) error {
	return func(ctx context.Context, m livekit.MatrixMember, delayID string) error {
		err := hs.DelegateDelayedLeave(ctx, rtcParticipant(m), delayID)
		var me *homeserver.MatrixError
		if errors.As(err, &me) && me.Status < http.StatusInternalServerError {
			return fmt.Errorf("%w: %s", livekit.ErrDelegation, me.Message)
		}
		return err
	}
}

// hsPresence tells the homeserver who is on the LiveKit SFU, for its
// delegated delayed leaves (MSC4195).
type hsPresence struct{ hs *homeserver.Server }

func (p hsPresence) ParticipantConnected(m livekit.MatrixMember) {
	p.hs.RTCParticipantConnected(rtcParticipant(m))
}

func (p hsPresence) ParticipantDisconnected(m livekit.MatrixMember) {
	p.hs.RTCParticipantDisconnected(rtcParticipant(m))
}

// liveKitIssuer is the homeserver's RTCTokenIssuer: the token service,
// which is created after the homeserver (it needs it), so it is set late.
type liveKitIssuer struct {
	tokens atomic.Pointer[livekit.TokenService]
}

// liveKitPeers is the focus's PeerDirectory of LiveKit participants: the
// signalling server, created after the focus (which it names peers
// through), so it is set late; until then no LiveKit participant exists.
type liveKitPeers struct {
	sig atomic.Pointer[livekit.Server]
}

func (l *liveKitPeers) Peer(pid string) (userID, deviceID string, ok bool) {
	if s := l.sig.Load(); s != nil {
		return s.Peer(pid)
	}
	return "", "", false
}

// errNoTokenService is what get_token meets before the token service is up.
var errNoTokenService = errors.New("switchboard: livekit token service not started")

func (l *liveKitIssuer) IssueRTCToken(p homeserver.RTCParticipant) (string, error) {
	t := l.tokens.Load()
	if t == nil {
		return "", errNoTokenService
	}
	return t.IssueFor(livekit.MatrixMember{RoomID: p.RoomID, UserID: p.UserID, DeviceID: p.DeviceID,
		SlotID: p.SlotID, MemberID: p.MemberID})
}
