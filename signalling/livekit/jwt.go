package livekit

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/livekit/protocol/auth"

	"github.com/switchboard-chat/switchboard/signalling/rtcroom"
)

// legacySlot is the MatrixRTC slot of the legacy /sfu/get request, which
// names no slot: the room's one call (MSC4143 "m.call" application, slot
// "ROOM").
const legacySlot = rtcroom.CallSlot

// RoomAlias is the LiveKit room name of a MatrixRTC slot of a Matrix room:
// unpadded standard base64 of SHA-256 over the JSON array [roomID, slotID],
// as lk-jwt-service derives it, so that every participant of the slot
// lands in one LiveKit room whichever service issued their token.
func RoomAlias(roomID, slotID string) string {
	b, _ := json.Marshal([]string{roomID, slotID}) // strings always marshal
	h := sha256.Sum256(b)
	return base64.RawStdEncoding.EncodeToString(h[:])
}

// memberIdentity is the LiveKit identity of a MatrixRTC member for
// /get_token: like the alias, a hash over [userID, deviceID, memberID].
func memberIdentity(userID, deviceID, memberID string) string {
	b, _ := json.Marshal([]string{userID, deviceID, memberID})
	h := sha256.Sum256(b)
	return base64.RawStdEncoding.EncodeToString(h[:])
}

// Grant is what a verified access token allows.
type Grant struct {
	Identity     string
	Room         string
	CanPublish   bool
	CanSubscribe bool
	Expires      time.Time
	// Matrix names the Matrix room, user and device the token was issued
	// for (empty for a token that says nothing of Matrix).
	Matrix MatrixMember
}

// MatrixMember is who a token service issued a token to: the Matrix
// room, user and device, and the MatrixRTC slot (MSC4143 slot_id,
// "m.call#ROOM" for the legacy /sfu/get flow, which names none) and
// member ID (the m.rtc.member event's member.id; empty for /sfu/get).
type MatrixMember struct {
	RoomID, UserID, DeviceID string
	SlotID, MemberID         string
}

// Token attributes naming the Matrix member (LiveKit participant
// attributes; this server does not pass them on to other participants).
const (
	attrRoomID   = "matrix.room_id"
	attrUserID   = "matrix.user_id"
	attrDeviceID = "matrix.device_id"
	attrSlotID   = "matrix.slot_id"
	attrMemberID = "matrix.member_id"
)

// keys is the API key and secret that sign and check access tokens.
type keys struct {
	apiKey, secret string
}

// mint signs a LiveKit access token (LiveKit's claim layout: iss the API
// key, sub the identity, video.room, video.roomJoin, video.canPublish,
// video.canSubscribe) for identity in room, valid for ttl.
func (k keys) mint(identity, room string, ttl time.Duration, m MatrixMember) (string, error) {
	yes := true
	at := auth.NewAccessToken(k.apiKey, k.secret)
	if m.UserID != "" {
		at.SetAttributes(map[string]string{attrRoomID: m.RoomID, attrUserID: m.UserID, attrDeviceID: m.DeviceID,
			attrSlotID: m.SlotID, attrMemberID: m.MemberID})
	}
	at.SetIdentity(identity).SetValidFor(ttl).SetVideoGrant(&auth.VideoGrant{
		RoomJoin: true, Room: room, CanPublish: &yes, CanSubscribe: &yes, CanPublishData: &yes,
	})
	return at.ToJWT()
}

// verify checks an access token's signature, issuer (our API key), time
// window and grant, and returns the grant. Every failure is
// ErrInvalidToken.
func (k keys) verify(raw string) (Grant, error) {
	if raw == "" {
		return Grant{}, fmt.Errorf("%w: no token", ErrInvalidToken)
	}
	if len(raw) > 8192 {
		return Grant{}, fmt.Errorf("%w: token too long", ErrInvalidToken)
	}
	v, err := auth.ParseAPIToken(raw)
	if err != nil {
		return Grant{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if v.APIKey() != k.apiKey {
		return Grant{}, fmt.Errorf("%w: issued for another key", ErrInvalidToken)
	}
	claims, grants, err := v.Verify(k.secret)
	if err != nil {
		return Grant{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if claims.ExpiresAt == nil {
		return Grant{}, fmt.Errorf("%w: no expiry", ErrInvalidToken)
	}
	vg := grants.Video
	if vg == nil || !vg.RoomJoin || vg.Room == "" || grants.Identity == "" {
		return Grant{}, fmt.Errorf("%w: no room join grant", ErrInvalidToken)
	}
	return Grant{
		Identity: grants.Identity, Room: vg.Room,
		CanPublish: vg.GetCanPublish(), CanSubscribe: vg.GetCanSubscribe(),
		Expires: claims.ExpiresAt.Time,
		Matrix: MatrixMember{RoomID: grants.Attributes[attrRoomID], UserID: grants.Attributes[attrUserID],
			DeviceID: grants.Attributes[attrDeviceID], SlotID: grants.Attributes[attrSlotID],
			MemberID: grants.Attributes[attrMemberID]},
	}, nil
}
