package rooms

import (
	"context"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// softFailed is step 6 (spec: Server-Server API, "Soft failure"): an
// event allowed by the state before it must also pass against the room's
// current state (resolved with the state before it when they differ),
// else it is kept out of the timeline, the frontier and the current
// state, stored as an outlier with a soft-failed verdict. A user banned
// here cannot keep talking through a server that has not heard of the
// ban.
func (w *Writer) softFailed(ctx context.Context, pdu gomatrixserverlib.PDU, before storage.StateMap) (bool, error) {
	if SameState(before, w.state) {
		return false, nil
	}
	now, err := w.l.Resolve(ctx, []storage.StateMap{w.state, before})
	if err != nil {
		return false, fmt.Errorf("rooms: state resolution: %w", err)
	}
	authErr := w.l.AuthAgainst(ctx, pdu, now)
	if authErr == nil {
		return false, nil
	}
	w.r.log.Info("inbound PDU soft-failed", "event_id", pdu.EventID(), "room_id", w.room.RoomID, "err", authErr)
	if err := w.tx.StoreOutlier(ctx, w.row(pdu)); err != nil {
		return true, err
	}
	return true, w.tx.RecordVerdict(ctx, storage.Verdict{EventID: pdu.EventID(), RoomID: w.room.RoomID,
		Verdict: storage.VerdictSoftFailed, Reason: authErr.Error(), ReceivedTS: w.r.nowMS()})
}
