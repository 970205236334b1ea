package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"

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
func startLiveKit(cfg *Config, baseURL string, hs *homeserver.Server, node *sfu.SFU, log *slog.Logger) (*liveKit, error) {
	secret, created, err := loadOrCreateSecret(filepath.Join(cfg.DataDir, liveKitSecretName))
	if err != nil {
		return nil, fmt.Errorf("livekit secret: %w", err)
	}
	if created {
		log.Info("generated the LiveKit access-token secret", "path", filepath.Join(cfg.DataDir, liveKitSecretName))
	}
	base := strings.TrimRight(baseURL, "/")
	wsURL := "ws" + strings.TrimPrefix(base, "http") + liveKitSFUPath
	tokens, err := livekit.NewTokenService(livekit.TokenConfig{Homeserver: hs, ServerName: cfg.ServerName,
		APIKey: liveKitAPIKey, APISecret: secret, SFUURL: wsURL, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("livekit token service: %w", err)
	}
	sig, err := livekit.NewServer(livekit.ServerConfig{SFU: node, APIKey: liveKitAPIKey, APISecret: secret,
		RoomState: hs, Logger: log})
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
