package signalling

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-chat/switchboard/homeserver"
	"github.com/switchboard-chat/switchboard/sfu"
)

// Homeserver is what the focus needs from the homeserver: a service
// account whose device receives to-device messages in process, a way to
// send to-device messages, and read access to room membership and state.
// *homeserver.Server satisfies it.
type Homeserver interface {
	// EnsureServiceUser creates (if needed) the focus's user and device
	// and returns the user ID.
	EnsureServiceUser(ctx context.Context, localpart, deviceID, displayName string) (userID string, err error)
	// ListenToDevice delivers every to-device message sent to the device
	// until stop is called.
	ListenToDevice(userID, deviceID string, buffer int) (msgs <-chan homeserver.ToDeviceMessage, stop func(), err error)
	// SendToDevice sends to-device messages from the focus.
	SendToDevice(ctx context.Context, msgs []homeserver.ToDeviceMessage) error
	// Membership returns userID's membership of roomID ("" if none).
	Membership(ctx context.Context, roomID, userID string) (string, error)
	// StateContent returns a piece of current room state (ok false when
	// there is none).
	StateContent(ctx context.Context, roomID, evType, stateKey string) (content json.RawMessage, ok bool, err error)
}

// PeerDirectory names the Matrix user and device of an SFU participant
// that is not the focus's (ok false when it knows none).
type PeerDirectory interface {
	Peer(participantID string) (userID, deviceID string, ok bool)
}

// FocusConfig is everything the focus needs from its caller.
type FocusConfig struct {
	// Homeserver is the homeserver the focus speaks through. Required.
	Homeserver Homeserver
	// SFU carries the media. Required. The focus does not close it. With
	// sfu.Config.AutoSubscribe false, participants receive only the
	// tracks they ask for with m.call.track_subscription.
	SFU *sfu.SFU

	// Localpart, DeviceID and DisplayName name the focus's service
	// account: clients address the focus as (@Localpart:server,
	// DeviceID). Defaults "switchboard", "SFU", "Switchboard SFU".
	Localpart, DeviceID, DisplayName string

	// InboxSize is the to-device inbox buffer; messages beyond it are
	// dropped by the homeserver. Default 256.
	InboxSize int
	// MaxContentBytes bounds the content of one to-device message or one
	// data-channel message. Default 65,536 (the Matrix event size limit).
	MaxContentBytes int
	// InviteRate and InviteBurst bound the invites one user may send
	// (token bucket, per second). Defaults 1/s and 5.
	InviteRate  float64
	InviteBurst int
	// MaxCallsPerUser bounds the concurrent calls (devices) of one user.
	// Default 10.
	MaxCallsPerUser int

	// CheckInterval is how often each participant's room membership and
	// m.call.member state are checked again (the homeserver does not push
	// state changes to the focus). Default 5s.
	CheckInterval time.Duration
	// PingInterval is how often the focus sends m.call.ping on the data
	// channel (MSC3898 requires at most 30s). Default 10s.
	PingInterval time.Duration
	// PongTimeout is how long a participant whose data channel is open
	// may go without answering; then it is removed. Default 30s.
	PongTimeout time.Duration
	// JoinTimeout bounds applying an offer and gathering the SFU's
	// candidates. Default 10s.
	JoinTimeout time.Duration
	// SendTimeout bounds one SendToDevice call. Default 10s.
	SendTimeout time.Duration

	// Peers, when set, names the Matrix user and device of SFU
	// participants of other protocols sharing a room's conference (the
	// LiveKit adapter's, signalling/livekit.Server), so that their
	// streams appear in sdp_stream_metadata and speaker messages; without
	// it only the focus's own participants do.
	Peers PeerDirectory

	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// Registerer receives the switchboard_focus_* metrics. May be nil.
	Registerer prometheus.Registerer
	// Now is the clock (expiry of call memberships, rate limits, pings).
	// Default time.Now.
	Now func() time.Time
}

func (c *FocusConfig) validateAndDefault() error {
	if c.Homeserver == nil {
		return fmt.Errorf("%w: Homeserver is required", ErrInvalidConfig)
	}
	if c.SFU == nil {
		return fmt.Errorf("%w: SFU is required", ErrInvalidConfig)
	}
	for name, v := range map[string]int{
		"InboxSize": c.InboxSize, "MaxContentBytes": c.MaxContentBytes,
		"InviteBurst": c.InviteBurst, "MaxCallsPerUser": c.MaxCallsPerUser,
	} {
		if v < 0 {
			return fmt.Errorf("%w: %s is negative", ErrInvalidConfig, name)
		}
	}
	if c.InviteRate < 0 {
		return fmt.Errorf("%w: InviteRate is negative", ErrInvalidConfig)
	}
	if c.PingInterval > 30*time.Second {
		return fmt.Errorf("%w: PingInterval above 30s (MSC3898)", ErrInvalidConfig)
	}
	defs := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	defs(&c.Localpart, "switchboard")
	defs(&c.DeviceID, "SFU")
	defs(&c.DisplayName, "Switchboard SFU")
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.InboxSize, 256)
	def(&c.MaxContentBytes, 65536)
	def(&c.InviteBurst, 5)
	def(&c.MaxCallsPerUser, 10)
	if c.InviteRate == 0 {
		c.InviteRate = 1
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defd(&c.CheckInterval, 5*time.Second)
	defd(&c.PingInterval, 10*time.Second)
	defd(&c.PongTimeout, 30*time.Second)
	defd(&c.JoinTimeout, 10*time.Second)
	defd(&c.SendTimeout, 10*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}
