package homeserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// ToDeviceMessage is a send-to-device message (spec: Client-Server API,
// "Send-to-Device messaging") to or from an in-process service.
type ToDeviceMessage struct {
	Sender       string
	Type         string
	Content      json.RawMessage
	TargetUser   string
	TargetDevice string
}

// serviceInbox delivers to-device messages addressed to a service device
// (the SFU focus) in process, without a /sync loop.
type serviceInbox struct {
	mu sync.Mutex // guards boxes
	// boxes maps "user\x00device" to the channel the service reads.
	boxes map[string]chan ToDeviceMessage
}

func (in *serviceInbox) lookup(userID, deviceID string) chan ToDeviceMessage {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.boxes[userID+"\x00"+deviceID]
}

// ErrServiceBusy is returned by ListenToDevice for a device that already
// has a listener.
var ErrServiceBusy = errors.New("homeserver: that service device already has a listener")

// EnsureServiceUser creates a local account without a password (nobody can
// log in as it) and a device for it, if they do not exist yet, and returns
// the user ID. Services such as the SFU focus speak as this user.
func (s *Server) EnsureServiceUser(ctx context.Context, localpart, deviceID, displayName string) (string, error) {
	userID := "@" + localpart + ":" + s.cfg.ServerName
	err := s.db.CreateUser(ctx, storage.User{UserID: userID, PasswordHash: "!"}, displayName, s.nowMS())
	if err != nil && !errors.Is(err, storage.ErrExists) {
		return "", fmt.Errorf("homeserver: service user: %w", err)
	}
	if err := s.db.EnsureDevice(ctx, userID, deviceID, displayName, s.nowMS()); err != nil {
		return "", fmt.Errorf("homeserver: service device: %w", err)
	}
	return userID, nil
}

// ListenToDevice returns a channel receiving every to-device message sent
// to (userID, deviceID) from now on, local or (later) federated, instead of
// queueing them for /sync. buffer bounds the channel; when the service
// falls behind, further messages are dropped and logged. stop ends it.
func (s *Server) ListenToDevice(userID, deviceID string, buffer int) (<-chan ToDeviceMessage, func(), error) {
	key := userID + "\x00" + deviceID
	s.inbox.mu.Lock()
	defer s.inbox.mu.Unlock()
	if s.inbox.boxes == nil {
		s.inbox.boxes = make(map[string]chan ToDeviceMessage)
	}
	if _, ok := s.inbox.boxes[key]; ok {
		return nil, nil, ErrServiceBusy
	}
	ch := make(chan ToDeviceMessage, buffer)
	s.inbox.boxes[key] = ch
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			s.inbox.mu.Lock()
			delete(s.inbox.boxes, key)
			s.inbox.mu.Unlock()
		})
	}, nil
}

// deliverToServices hands the messages addressed to service devices to
// them and returns the rest.
func (s *Server) deliverToServices(msgs []storage.ToDevice) []storage.ToDevice {
	rest := msgs[:0]
	for _, m := range msgs {
		box := s.inbox.lookup(m.UserID, m.DeviceID)
		if box == nil {
			rest = append(rest, m)
			continue
		}
		select {
		case box <- ToDeviceMessage{Sender: m.Sender, Type: m.Type, Content: m.Content, TargetUser: m.UserID, TargetDevice: m.DeviceID}:
		default:
			s.log.Warn("service device inbox full: to-device message dropped", "user_id", m.UserID, "device_id", m.DeviceID, "type", m.Type)
		}
	}
	return rest
}

// SendToDevice queues to-device messages from a service for local devices.
func (s *Server) SendToDevice(ctx context.Context, msgs []ToDeviceMessage) error {
	var local, remote []storage.ToDevice
	for _, m := range msgs {
		td := storage.ToDevice{UserID: m.TargetUser, DeviceID: m.TargetDevice, Sender: m.Sender, Type: m.Type, Content: m.Content}
		if _, server, ok := splitUserID(m.TargetUser); !ok {
			continue
		} else if server != s.cfg.ServerName {
			remote = append(remote, td)
			continue
		}
		local = append(local, td)
	}
	if len(remote) > 0 {
		// Users of other servers are reached through federation.
		if err := s.edus.SendToDevice(ctx, remote); err != nil {
			return err
		}
	}
	local = s.deliverToServices(local)
	if len(local) == 0 {
		return nil
	}
	_, err := s.db.PutToDevice(ctx, local)
	return err
}

// Membership returns userID's membership of roomID ("" if none).
func (s *Server) Membership(ctx context.Context, roomID, userID string) (string, error) {
	return s.db.Membership(ctx, roomID, userID)
}

// StateContent returns the content of a piece of current room state, or
// ok false when there is none.
func (s *Server) StateContent(ctx context.Context, roomID, evType, stateKey string) (content json.RawMessage, ok bool, err error) {
	e, err := s.db.CurrentStateEvent(ctx, roomID, evType, stateKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return contentOf(e), true, nil
}
