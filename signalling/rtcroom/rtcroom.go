// Package rtcroom names the SFU conference of a Matrix room's call, the one
// rule the native focus (package signalling: MSC3401 membership, MSC3898
// to-device signalling) and the LiveKit adapter (package
// signalling/livekit: MatrixRTC, MSC4143 with MSC4195 tokens) share so that
// their participants land in one conference and receive each other's media
// (issue 12: "one conference per room"). It imports nothing of ours.
package rtcroom

// CallSlot is the MatrixRTC slot of a room's call (MSC4143: application
// "m.call", call ID "ROOM"), the slot lk-jwt-service's legacy /sfu/get
// names implicitly and Element Call's /get_token names explicitly.
const CallSlot = "m.call#ROOM"

// Conference is the SFU conference ID of the call of roomID. A room has one
// call: every MSC3401 m.call of the room (whatever its conf_id) and the
// MatrixRTC slot CallSlot share it.
func Conference(roomID string) string { return "matrix/" + roomID }
