// Package livekit lets LiveKit clients (livekit-client, and through it
// Element Call and Element X) hold MatrixRTC calls on Switchboard's SFU,
// with nothing else installed. It has two parts:
//
//   - TokenService, the MatrixRTC authorisation service of MSC4195 (what
//     lk-jwt-service does elsewhere): a client posts the OpenID token its
//     homeserver gave it (Client-Server API, "OpenID") to
//     {livekit_service_url}/sfu/get or /get_token; the service asks the
//     user's homeserver who the token belongs to (directly for local users,
//     GET /_matrix/federation/v1/openid/userinfo for others), checks that
//     the user is joined to the room, and answers {url, jwt}: the SFU's
//     WebSocket URL and a LiveKit access token (HS256) for the LiveKit room
//     derived from the Matrix room.
//   - Server, LiveKit's signalling protocol (the protobuf SignalRequest and
//     SignalResponse of github.com/livekit/protocol over a WebSocket at
//     {url}/rtc), an adapter over the same sfu core as the Matrix focus of
//     package signalling.
//
// Token request shapes, the room alias and the identity follow
// lk-jwt-service so that clients built against it work unchanged: the
// alias is the unpadded standard base64 of SHA-256 over the JSON array
// [room_id, slot_id] ("m.call#ROOM" for the legacy /sfu/get).
package livekit
