package rooms

import (
	"context"
	"errors"

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

// StateReader is what CurrentPowerLevels reads (a *storage.DB).
type StateReader interface {
	Room(ctx context.Context, roomID string) (storage.Room, error)
	CurrentStateEvent(ctx context.Context, roomID, evType, stateKey string) (storage.Event, error)
}

// CurrentPowerLevels returns a room's current power levels outside a
// write, by the same rule as Loader.PowerLevels: the room's
// m.room.power_levels (string levels of old room versions read as
// integers), else the defaults with the creator at 100.
func CurrentPowerLevels(ctx context.Context, src StateReader, roomID string) (*gomatrixserverlib.PowerLevelContent, error) {
	room, err := src.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, refuse(ErrNotFound, "Unknown room %s", roomID)
	}
	if err != nil {
		return nil, err
	}
	e, err := src.CurrentStateEvent(ctx, roomID, spec.MRoomPowerLevels, "")
	if errors.Is(err, storage.ErrNotFound) {
		pl := gomatrixserverlib.PowerLevelContent{}
		pl.Defaults()
		pl.Users = map[string]int64{room.Creator: 100}
		return &pl, nil
	}
	if err != nil {
		return nil, err
	}
	p, err := ParseIn(room.Version, e)
	if err != nil {
		return nil, err
	}
	return p.PowerLevels()
}
