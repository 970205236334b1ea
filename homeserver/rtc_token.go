package homeserver

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// The homeserver's own LiveKit token endpoint (MSC4195, as matrix-js-sdk
// 43's _unstable_getLivekitToken calls it): the client authenticates with
// its access token instead of an OpenID token, the homeserver checks that
// the user is joined to the room, and the token service signs the JWT.
// The homeserver never imports the signalling package: cmd/switchboard
// hands it the signer as RTCConfig.TokenIssuer.

const getTokenPath = "/_matrix/client/unstable/io.element.msc4195/rtc/livekit/get_token"

// RTCTokenIssuer signs LiveKit access tokens for MatrixRTC members the
// homeserver has authenticated. The error is for the log; the client
// gets M_UNKNOWN.
type RTCTokenIssuer interface {
	IssueRTCToken(p RTCParticipant) (jwt string, err error)
}

// getTokenRequest is matrix-js-sdk's LivekitGetTokenRequest.
type getTokenRequest struct {
	URL        *string `json:"url"`
	RoomID     *string `json:"room_id"`
	SlotID     *string `json:"slot_id"`
	ServerName string  `json:"server_name"`
	Member     struct {
		ID              string `json:"id"`
		ClaimedDeviceID string `json:"claimed_device_id"`
	} `json:"member"`
}

// getRTCToken implements POST
// /_matrix/client/unstable/io.element.msc4195/rtc/livekit/get_token:
// {url, room_id, slot_id, member {id, claimed_device_id}, server_name?}
// answered by {jwt}. The claimed device must be the requesting device:
// the LiveKit identity names it.
func (s *Server) getRTCToken(c echo.Context) error {
	d := device(c)
	if err := s.sendLimit.allow(d.UserID); err != nil {
		return err
	}
	var req getTokenRequest
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if req.URL == nil || req.RoomID == nil || req.SlotID == nil || req.Member.ID == "" ||
		*req.RoomID == "" || *req.SlotID == "" {
		return errBadJSON("url, room_id, slot_id and member.id are required")
	}
	if !strings.HasPrefix(*req.RoomID, "!") || !rtcID(*req.RoomID) || !rtcID(*req.SlotID) || !rtcID(req.Member.ID) {
		return errInvalidParam("room_id, slot_id and member.id must be identifiers of at most 255 bytes")
	}
	if req.ServerName != "" && req.ServerName != s.cfg.ServerName {
		// Asking another server's SFU over federation is not done here.
		return errInvalidParam("tokens for other servers' SFUs are not fetched; ask %s directly", req.ServerName)
	}
	issuer := s.cfg.RTC.TokenIssuer
	if issuer == nil || s.cfg.RTC.DiscoveryDisabled {
		return errNotFound("this server has no LiveKit SFU")
	}
	if !s.ownLiveKitURL(*req.URL) {
		return errInvalidParam("url is not one of this server's SFUs")
	}
	if req.Member.ClaimedDeviceID != "" && req.Member.ClaimedDeviceID != d.DeviceID {
		return errForbidden("member.claimed_device_id is not the device making the request")
	}
	ok, err := s.InRoomForRTC(c.Request().Context(), *req.RoomID, d.UserID)
	if err != nil {
		return err
	}
	if !ok {
		return errForbidden("you are not joined to this room")
	}
	jwt, err := issuer.IssueRTCToken(RTCParticipant{UserID: d.UserID, RoomID: *req.RoomID, SlotID: *req.SlotID,
		MemberID: req.Member.ID, DeviceID: d.DeviceID})
	if err != nil {
		s.log.Info("issuing a LiveKit token", "user_id", d.UserID, "err", err)
		return errUnknown("could not issue a token")
	}
	return c.JSON(http.StatusOK, map[string]string{"jwt": jwt})
}

// rtcID bounds an identifier of a get_token request as the token service
// does: at most 255 bytes (the Matrix limit on IDs), no control
// characters.
func rtcID(s string) bool {
	if len(s) > 255 {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
