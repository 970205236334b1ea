package homeserver

import (
	"context"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Appending to a room, local or remote, is rooms' business (rooms/): this
// file is the homeserver's side of it.

// defaultRoomVersion is what createRoom uses without room_version.
const defaultRoomVersion = gomatrixserverlib.RoomVersionV11

// afterAppend is what the homeserver adds to every appended event, inside
// the write that stores it: MatrixRTC's bookkeeping (delayed state it
// supersedes, sticky records) and, for local events, the metrics.
func (s *Server) afterAppend(ctx context.Context, tx *storage.Tx, a rooms.Appended) error {
	if err := s.rtcAfterStore(ctx, tx, a.Event, a.Current); err != nil {
		return err
	}
	if a.Local {
		kind := "message"
		if a.Event.StateKey != nil {
			kind = "state"
		}
		s.metrics.eventsSent.WithLabelValues(kind).Inc()
	}
	return nil
}

// sendEventTx appends one local event to a room in its own write
// transaction (the storage writer wakes /sync on commit). A repeated
// client transaction returns the first event instead of sending again
// (spec: "Transaction identifiers").
func (s *Server) sendEventTx(ctx context.Context, roomID string, ev rooms.Event) (string, error) {
	var eventID string
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if ev.Txn != nil {
			id, err := tx.TxnEvent(ctx, ev.Sender, ev.Txn.DeviceID, ev.Txn.TxnID)
			if err != nil {
				return err
			}
			if id != "" {
				eventID = id
				return nil
			}
		}
		w, err := s.rooms.Open(ctx, tx, roomID)
		if err != nil {
			return err
		}
		stored, err := w.Append(ctx, ev)
		if err != nil {
			return err
		}
		eventID = stored.EventID
		return nil
	})
	if err != nil {
		return "", err
	}
	return eventID, nil
}
