package sync

import (
	"context"
	"encoding/json"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// MaxToDevicePerSync bounds the to-device messages of one response; the
// rest follow in the next.
const MaxToDevicePerSync = 100

// ToDeviceStore is what the to-device stream reads and deletes.
type ToDeviceStore interface {
	ToDeviceUpTo(ctx context.Context, userID, deviceID string, upto int64, limit int) ([]storage.ToDevice, error)
	AckToDevice(ctx context.Context, userID, deviceID string, upto int64) error
}

// toDeviceStream delivers to-device messages (spec: Client-Server API,
// "Send-to-Device messaging"). It owns their acknowledgement: what the
// since token covers was received and is deleted, the rest delivered.
type toDeviceStream struct {
	store ToDeviceStore
	notes Notifier
}

func (s *toDeviceStream) ID() StreamID { return StreamToDevice }

func (s *toDeviceStream) Latest(_ context.Context, committed int64) int64 { return committed }

func (s *toDeviceStream) Fill(ctx context.Context, req *Request, from, to int64) (int64, bool, error) {
	evs, next, err := ToDeviceBatch(ctx, s.store, s.notes, req.UserID, req.DeviceID, from, to, MaxToDevicePerSync, req.Initial())
	if err != nil {
		return 0, false, err
	}
	req.Response.ToDevice.Events = append(req.Response.ToDevice.Events, evs...)
	return next, len(evs) > 0, nil
}

// ToDeviceBatch acknowledges (deletes) a device's to-device messages up to
// since and returns the next ones up to upto, at most limit, with the
// position that covers them. With nothing newer for the user than since
// (and not first), there is nothing to fetch or acknowledge, and since
// comes back. Sliding sync's to_device extension (MSC3885) shares it.
func ToDeviceBatch(ctx context.Context, store ToDeviceStore, notes Notifier, userID, deviceID string, since, upto int64, limit int, first bool) ([]any, int64, error) {
	events := []any{}
	next := since
	if !first && since >= notes.LastFor(storage.KeyToDevice(userID)) {
		return events, next, nil
	}
	if since > 0 {
		if err := store.AckToDevice(ctx, userID, deviceID, since); err != nil {
			return nil, 0, err
		}
	}
	msgs, err := store.ToDeviceUpTo(ctx, userID, deviceID, upto, limit)
	if err != nil {
		return nil, 0, err
	}
	for _, m := range msgs {
		if m.Pos <= since {
			continue
		}
		events = append(events, map[string]any{"sender": m.Sender, "type": m.Type, "content": json.RawMessage(m.Content)})
		next = m.Pos
	}
	if len(msgs) < limit {
		// Everything up to upto is delivered (or acknowledged).
		next = max(next, upto)
	}
	return events, next, nil
}
