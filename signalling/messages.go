package signalling

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Event types the focus speaks. To-device call events follow the VoIP
// module of the Client-Server API as carried over to-device by MSC3401
// ("Call setup"); data-channel messages are MSC3898's ("Data-channel
// messaging").
const (
	TypeInvite            = "m.call.invite"
	TypeAnswer            = "m.call.answer"
	TypeCandidates        = "m.call.candidates"
	TypeNegotiate         = "m.call.negotiate"
	TypeHangup            = "m.call.hangup"
	TypeReject            = "m.call.reject"
	TypeSelectAnswer      = "m.call.select_answer"
	TypeMetadataChanged   = "m.call.sdp_stream_metadata_changed"
	TypeTrackSubscription = "m.call.track_subscription"
	TypePing              = "m.call.ping"
	TypePong              = "m.call.pong"
	// TypeSpeakers is the focus's own data-channel message naming who is
	// speaking: MSC3898 leaves active speaker signalling as a TODO.
	// Content: {"active": [{"user_id", "device_id"}...], "dominant":
	// {"user_id", "device_id"} or absent}.
	TypeSpeakers = "chat.switchboard.call.speakers"

	// MSC3401 room state, stable and unstable names.
	TypeCall               = "m.call"
	TypeCallUnstable       = "org.matrix.msc3401.call"
	TypeCallMember         = "m.call.member"
	TypeCallMemberUnstable = "org.matrix.msc3401.call.member"
)

// Hangup reasons the focus sends. The spec's reasons (Client-Server API,
// m.call.hangup) describe failures between peers; where none fits, the
// focus uses its own, which clients treat as unknown_error.
const (
	// ReasonNotJoined: the sender is not joined to the room, the room
	// has no such call, or the sender has no live m.call.member naming
	// that device and session (expired, removed, or naming another
	// device). Not in the spec.
	ReasonNotJoined = "user_not_joined"
	// ReasonBusy: the focus will not take the call now (invite rate
	// limit, per-user, conference or node limits). Spec reason.
	ReasonBusy = "user_busy"
	// ReasonInvalid: malformed or oversized signalling, or an offer the
	// SFU cannot apply. Spec reason unknown_error.
	ReasonInvalid = "unknown_error"
	// ReasonICEFailed: the media connection failed. Spec reason.
	ReasonICEFailed = "ice_failed"
	// ReasonICETimeout: no m.call.pong within FocusConfig.PongTimeout.
	// Spec reason.
	ReasonICETimeout = "ice_timeout"
	// ReasonUserHangup: the focus is shutting down. Spec reason.
	ReasonUserHangup = "user_hangup"
)

// maxIDLength bounds call, party, conference, room, device and session
// IDs and stream or track IDs (the spec bounds room IDs and user IDs at
// 255 bytes).
const maxIDLength = 255

// maxListLength bounds candidate, subscription and metadata lists.
const maxListLength = 64

// sessionDescription is an RTCSessionDescriptionInit.
type sessionDescription struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

// callHeader holds the fields every to-device m.call.* event of MSC3401
// carries besides its own.
type callHeader struct {
	CallID          string `json:"call_id"`
	PartyID         string `json:"party_id"`
	ConfID          string `json:"conf_id"`
	DeviceID        string `json:"device_id"`
	SenderSessionID string `json:"sender_session_id"`
	DestSessionID   string `json:"dest_session_id"`
}

// streamMeta is one stream of MSC3077 sdp_stream_metadata, keyed by
// stream ID.
type streamMeta struct {
	Purpose    string          `json:"purpose,omitempty"`
	AudioMuted bool            `json:"audio_muted"`
	VideoMuted bool            `json:"video_muted"`
	Tracks     json.RawMessage `json:"tracks,omitempty"`
}

// inviteContent is a to-device m.call.invite to the focus (MSC3401 and
// MSC3898). RoomID is required by this focus: MSC3401 names conferences by
// the m.call state key only, and the focus cannot find a room from a
// conference ID.
type inviteContent struct {
	callHeader
	RoomID   string                `json:"room_id"`
	Offer    sessionDescription    `json:"offer"`
	Metadata map[string]streamMeta `json:"sdp_stream_metadata"`
}

// candidate is an RTCIceCandidateInit.
type candidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

type candidatesContent struct {
	callHeader
	Candidates []candidate `json:"candidates"`
}

type negotiateContent struct {
	callHeader
	Description sessionDescription    `json:"description"`
	Metadata    map[string]streamMeta `json:"sdp_stream_metadata"`
}

type hangupContent struct {
	callHeader
	Reason string `json:"reason"`
}

type metadataContent struct {
	callHeader
	Metadata map[string]streamMeta `json:"sdp_stream_metadata"`
}

// decodeObject unmarshals a JSON object within max bytes into v.
func decodeObject(b []byte, max int, v any) error {
	if len(b) > max {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(b), max)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("%w: content is not a JSON object", ErrMalformed)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

func checkID(name, v string, required bool) error {
	if v == "" {
		if required {
			return fmt.Errorf("%w: %s missing", ErrMalformed, name)
		}
		return nil
	}
	if len(v) > maxIDLength {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrMalformed, name, maxIDLength)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s has a control character", ErrMalformed, name)
		}
	}
	return nil
}

func (h *callHeader) check() error {
	if err := checkID("call_id", h.CallID, true); err != nil {
		return err
	}
	if err := checkID("device_id", h.DeviceID, true); err != nil {
		return err
	}
	for _, f := range []struct{ n, v string }{{"party_id", h.PartyID}, {"conf_id", h.ConfID},
		{"sender_session_id", h.SenderSessionID}, {"dest_session_id", h.DestSessionID}} {
		if err := checkID(f.n, f.v, false); err != nil {
			return err
		}
	}
	return nil
}

func checkMetadata(m map[string]streamMeta) error {
	if len(m) > maxListLength {
		return fmt.Errorf("%w: sdp_stream_metadata has %d streams", ErrMalformed, len(m))
	}
	for id, s := range m {
		if err := checkID("stream ID", id, true); err != nil {
			return err
		}
		if err := checkID("purpose", s.Purpose, false); err != nil {
			return err
		}
	}
	return nil
}

func checkDescription(d sessionDescription, want string) error {
	if d.Type != want {
		return fmt.Errorf("%w: description type %q, want %q", ErrMalformed, d.Type, want)
	}
	if !strings.HasPrefix(d.SDP, "v=0") {
		return fmt.Errorf("%w: SDP does not start with v=0", ErrMalformed)
	}
	return nil
}

// parseInvite parses and checks an m.call.invite's content.
func parseInvite(b []byte, max int) (*inviteContent, error) {
	var c inviteContent
	if err := decodeObject(b, max, &c); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return &c, err
	}
	if err := checkID("conf_id", c.ConfID, true); err != nil {
		return &c, err
	}
	if err := checkID("sender_session_id", c.SenderSessionID, true); err != nil {
		return &c, err
	}
	if err := checkID("room_id", c.RoomID, true); err != nil {
		return &c, err
	}
	if !strings.HasPrefix(c.RoomID, "!") {
		return &c, fmt.Errorf("%w: room_id %q", ErrMalformed, c.RoomID)
	}
	if err := checkDescription(c.Offer, "offer"); err != nil {
		return &c, err
	}
	return &c, checkMetadata(c.Metadata)
}

// parseHeader parses only the common fields, for events whose own fields
// are parsed later (or, for a malformed invite, to address the hangup).
func parseHeader(b []byte, max int) (*callHeader, error) {
	var h callHeader
	if err := decodeObject(b, max, &h); err != nil {
		return nil, err
	}
	return &h, h.check()
}

// replyHeader extracts from a call event what a hangup needs to reach its
// sender (call_id and device_id), dropping the fields that fail checks;
// nil if the event cannot be answered.
func replyHeader(b []byte, max int) *callHeader {
	var h callHeader
	if err := decodeObject(b, max, &h); err != nil {
		return nil
	}
	if checkID("call_id", h.CallID, true) != nil || checkID("device_id", h.DeviceID, true) != nil {
		return nil
	}
	if checkID("conf_id", h.ConfID, false) != nil {
		h.ConfID = ""
	}
	if checkID("sender_session_id", h.SenderSessionID, false) != nil {
		h.SenderSessionID = ""
	}
	return &h
}

func parseCandidates(b []byte, max int) (*candidatesContent, error) {
	var c candidatesContent
	if err := decodeObject(b, max, &c); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	if len(c.Candidates) > maxListLength {
		return nil, fmt.Errorf("%w: %d candidates", ErrMalformed, len(c.Candidates))
	}
	for _, ca := range c.Candidates {
		if ca.SDPMid != nil {
			if err := checkID("sdpMid", *ca.SDPMid, false); err != nil {
				return nil, err
			}
		}
	}
	return &c, nil
}

func parseNegotiate(b []byte, max int) (*negotiateContent, error) {
	return parseNegotiateWith(b, max, true)
}

// parseNegotiateBody parses m.call.negotiate as sent on the data channel,
// without the to-device call fields.
func parseNegotiateBody(b []byte, max int) (*negotiateContent, error) {
	return parseNegotiateWith(b, max, false)
}

func parseNegotiateWith(b []byte, max int, header bool) (*negotiateContent, error) {
	var c negotiateContent
	if err := decodeObject(b, max, &c); err != nil {
		return nil, err
	}
	if header {
		if err := c.check(); err != nil {
			return nil, err
		}
	}
	if c.Description.Type != "offer" && c.Description.Type != "answer" {
		return nil, fmt.Errorf("%w: description type %q", ErrMalformed, c.Description.Type)
	}
	if err := checkDescription(c.Description, c.Description.Type); err != nil {
		return nil, err
	}
	return &c, checkMetadata(c.Metadata)
}

func parseHangup(b []byte, max int) (*hangupContent, error) {
	var c hangupContent
	if err := decodeObject(b, max, &c); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return &c, checkID("reason", c.Reason, false)
}

func parseMetadataChanged(b []byte, max int) (*metadataContent, error) {
	return parseMetadataWith(b, max, true)
}

// parseMetadataBody parses m.call.sdp_stream_metadata_changed as sent on
// the data channel.
func parseMetadataBody(b []byte, max int) (*metadataContent, error) {
	return parseMetadataWith(b, max, false)
}

func parseMetadataWith(b []byte, max int, header bool) (*metadataContent, error) {
	var c metadataContent
	if err := decodeObject(b, max, &c); err != nil {
		return nil, err
	}
	if header {
		if err := c.check(); err != nil {
			return nil, err
		}
	}
	return &c, checkMetadata(c.Metadata)
}

// dataMessage is one MSC3898 data-channel message: {"type", "content"}.
type dataMessage struct {
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// parseDataMessage parses the envelope of a data-channel message.
func parseDataMessage(b []byte, max int) (*dataMessage, error) {
	var m dataMessage
	if err := decodeObject(b, max, &m); err != nil {
		return nil, err
	}
	if err := checkID("type", m.Type, true); err != nil {
		return nil, err
	}
	if len(m.Content) == 0 || string(m.Content) == "null" {
		m.Content = json.RawMessage("{}")
	}
	if m.Content[0] != '{' {
		return nil, fmt.Errorf("%w: content is not an object", ErrMalformed)
	}
	return &m, nil
}

// trackRef names a track by stream and track ID, with the size a
// subscriber wants (MSC3898 m.call.track_subscription).
type trackRef struct {
	StreamID string `json:"stream_id"`
	TrackID  string `json:"track_id"`
	Width    int    `json:"width,omitempty"`
	Height   int    `json:"height,omitempty"`
}

type trackSubscription struct {
	Subscribe   []trackRef `json:"subscribe"`
	Unsubscribe []trackRef `json:"unsubscribe"`
}

// maxDimension bounds requested video sizes.
const maxDimension = 1 << 14

func parseTrackSubscription(b []byte, max int) (*trackSubscription, error) {
	var s trackSubscription
	if err := decodeObject(b, max, &s); err != nil {
		return nil, err
	}
	if len(s.Subscribe) > maxListLength || len(s.Unsubscribe) > maxListLength {
		return nil, fmt.Errorf("%w: more than %d subscription changes", ErrMalformed, maxListLength)
	}
	for _, list := range [][]trackRef{s.Subscribe, s.Unsubscribe} {
		for _, r := range list {
			if err := checkID("track_id", r.TrackID, true); err != nil {
				return nil, err
			}
			if err := checkID("stream_id", r.StreamID, false); err != nil {
				return nil, err
			}
			if r.Width < 0 || r.Height < 0 || r.Width > maxDimension || r.Height > maxDimension {
				return nil, fmt.Errorf("%w: size %dx%d", ErrMalformed, r.Width, r.Height)
			}
		}
	}
	return &s, nil
}
