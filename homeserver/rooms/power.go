package rooms

import (
	"context"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// PowerLevels returns the power levels a state map holds, or, without an
// m.room.power_levels event, the defaults with the room's creator at 100
// (spec: Client-Server API, "m.room.power_levels": "If the room contains
// no m.room.power_levels event, the room's creator has a power level of
// 100, and all other users have a power level of 0").
func (l *Loader) PowerLevels(ctx context.Context, state storage.StateMap) (*gomatrixserverlib.PowerLevelContent, error) {
	if id, ok := state[storage.StateKey{Type: spec.MRoomPowerLevels}]; ok {
		p, err := l.PDU(ctx, id)
		if err != nil {
			return nil, err
		}
		return p.PowerLevels()
	}
	pl := gomatrixserverlib.PowerLevelContent{}
	pl.Defaults()
	if id, ok := state[storage.StateKey{Type: spec.MRoomCreate}]; ok {
		p, err := l.PDU(ctx, id)
		if err != nil {
			return nil, err
		}
		pl.Users = map[string]int64{string(p.SenderID()): 100}
	}
	return &pl, nil
}

// PowerLevels returns the room's current power levels.
func (w *Writer) PowerLevels(ctx context.Context) (*gomatrixserverlib.PowerLevelContent, error) {
	return w.l.PowerLevels(ctx, w.state)
}
