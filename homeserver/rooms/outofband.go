package rooms

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Appends that start from what another server told us rather than from
// the room's own DAG here. They share the storage of every append
// (storage.Tx.StoreRemoteEvent) but not its checks, for want of a state
// to check against.

// AppendJoin stores the room a remote join brought (spec: Server-Server
// API, "Joining Rooms": the send_join answer): the room row, the returned
// state and auth chain as outliers (each checked already for hash and
// signatures, and by its auth events), and our join on top of that state
// as the first event of the room's timeline here. The state must hold
// m.room.create and allow the join (else ErrBadEvent).
func (r *Rooms) AppendJoin(ctx context.Context, tx *storage.Tx, version string, join gomatrixserverlib.PDU, state, chain []gomatrixserverlib.PDU) error {
	roomID := join.RoomID().String()
	before := storage.StateMap{}
	memberships := map[string]string{}
	var create gomatrixserverlib.PDU
	for _, p := range state {
		if p.StateKey() == nil {
			return refuse(ErrBadEvent, "non-state event in send_join state")
		}
		before[storage.StateKey{Type: p.Type(), StateKey: *p.StateKey()}] = p.EventID()
		if p.Type() == spec.MRoomMember {
			memberships[p.EventID()], _ = p.Membership()
		}
		if p.Type() == spec.MRoomCreate && *p.StateKey() == "" {
			create = p
		}
	}
	if create == nil {
		return refuse(ErrBadEvent, "send_join state has no m.room.create")
	}
	if err := AllowedByList(join, state); err != nil {
		return refuse(ErrBadEvent, "join not allowed by the returned state: %v", err)
	}
	memberships[join.EventID()] = "join"
	now := r.nowMS()
	err := tx.CreateRoom(ctx, storage.Room{RoomID: roomID, Version: version, Creator: string(create.SenderID()), CreatedTS: int64(create.OriginServerTS())})
	if err != nil && !errors.Is(err, storage.ErrExists) {
		return err
	}
	for _, p := range append(chain, state...) {
		if err := tx.StoreOutlier(ctx, EventRow(p, now)); err != nil {
			return err
		}
	}
	current := CloneState(before)
	current[storage.StateKey{Type: spec.MRoomMember, StateKey: *join.StateKey()}] = join.EventID()
	_, err = tx.StoreRemoteEvent(ctx, storage.RemoteEvent{
		Event: EventRow(join, now), Before: before, Current: current,
		Extremities: []string{join.EventID()}, Depth: join.Depth(), Memberships: memberships,
	})
	return err
}

// AppendOutOfBand stores a membership event of a room whose timeline we
// do not hold: an invite of one of our users to a room we are not in, or
// the leave one of them sent through another server (spec: Client-Server
// API, "Room membership": rejecting an invite; Server-Server API,
// "Inviting to a room", "Leaving Rooms (Rejecting Invites)"). It becomes
// the user's current membership without moving the room's frontier; there
// is no state here to check it against. The room row is created when
// absent (the sender as creator); an event stored already is kept.
func (r *Rooms) AppendOutOfBand(ctx context.Context, tx *storage.Tx, pdu gomatrixserverlib.PDU, version string, unsignedExtra json.RawMessage) error {
	if pdu.Type() != spec.MRoomMember || pdu.StateKey() == nil {
		return refuse(ErrBadEvent, "only a membership event is stored out of band")
	}
	roomID := pdu.RoomID().String()
	now := r.nowMS()
	err := tx.CreateRoom(ctx, storage.Room{RoomID: roomID, Version: version, Creator: string(pdu.SenderID()), CreatedTS: now})
	if err != nil && !errors.Is(err, storage.ErrExists) {
		return err
	}
	if _, err := tx.Event(ctx, pdu.EventID()); err == nil {
		return nil
	}
	room, err := tx.Room(ctx, roomID)
	if err != nil {
		return err
	}
	current, err := tx.Snapshot(ctx, room.CurrentSnapshot)
	if err != nil {
		return err
	}
	next := CloneState(current)
	next[storage.StateKey{Type: spec.MRoomMember, StateKey: *pdu.StateKey()}] = pdu.EventID()
	ev := EventRow(pdu, now)
	ev.UnsignedExtra = unsignedExtra
	membership, _ := pdu.Membership()
	_, err = tx.StoreRemoteEvent(ctx, storage.RemoteEvent{
		Event: ev, Before: current, BeforeID: room.CurrentSnapshot, Current: next,
		Extremities: room.Extremities, Depth: room.Depth, Memberships: map[string]string{pdu.EventID(): membership},
	})
	return err
}
