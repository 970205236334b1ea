package homeserver

import (
	"context"
	"errors"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// roomReader is a local user's standing in a room for the endpoints that
// read it (visibility.go has the per-event rule).
type roomReader struct {
	membership    string        // current membership, "" if none
	member        storage.Event // the current member event, if any
	worldReadable bool          // the room's current setting is world_readable
}

// readerOf answers 403 for a user who has no membership of the room
// (never invited, never joined) unless the room is world_readable now
// (spec: Client-Server API, "History visibility": world_readable rooms may
// be read by anyone).
func (s *Server) readerOf(ctx context.Context, roomID, userID string) (roomReader, error) {
	var r roomReader
	ev, err := s.db.CurrentStateEvent(ctx, roomID, spec.MRoomMember, userID)
	switch {
	case err == nil:
		r.member, r.membership = ev, membershipOfEvent(ev)
	case !errors.Is(err, storage.ErrNotFound):
		return r, err
	}
	if r.membership != spec.Join {
		hv, err := s.db.CurrentStateEvent(ctx, roomID, spec.MRoomHistoryVisibility, "")
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return r, err
		}
		r.worldReadable = err == nil && historyVisibilityOf(hv) == visWorldReadable
	}
	if r.membership == "" && !r.worldReadable {
		return r, errForbidden("You are not in room %s", roomID)
	}
	return r, nil
}

// readableState is the room state a user may read (spec: "GET
// /rooms/{roomId}/state": "If the user has left the room then the state
// is taken from the state of the room when they left"): the current state
// for a member or a world_readable room, the state at their leave or ban
// for one who left, nothing for an invitee.
func (s *Server) readableState(ctx context.Context, roomID string, r roomReader) ([]storage.Event, error) {
	switch {
	case r.membership == spec.Join || r.worldReadable:
		return s.db.CurrentState(ctx, roomID)
	case r.membership == spec.Leave || r.membership == spec.Ban:
		snap, err := s.db.Snapshot(ctx, r.member.SnapAfter)
		if err != nil {
			return nil, err
		}
		ids := make([]string, 0, len(snap))
		for _, id := range snap {
			ids = append(ids, id)
		}
		return s.db.Events(ctx, ids)
	}
	return nil, errForbidden("You are not joined to room %s", roomID)
}

// visibleEvent loads an event of roomID that the reader may see; 404
// otherwise, so that a hidden event is indistinguishable from an unknown
// one.
func (s *Server) visibleEvent(ctx context.Context, roomID, userID, eventID string) (storage.Event, error) {
	e, err := s.db.Event(ctx, eventID)
	if err == nil && e.Outlier && e.RoomID == roomID {
		// An event fetched into a timeline gap (gaps.go) reads as if it
		// sat just before the gap's event; other outliers are not shown.
		if pos, gerr := s.db.GapPosOf(ctx, eventID); gerr == nil {
			e.Pos, e.Outlier = pos-1, false
		} else if !errors.Is(gerr, storage.ErrNotFound) {
			return e, gerr
		}
	}
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (e.RoomID != roomID || e.Outlier)) {
		return e, errNotFound("Event not found")
	}
	if err != nil {
		return e, err
	}
	ok, err := s.userVisibility(roomID, userID).visible(ctx, e)
	if err != nil {
		return e, err
	}
	if !ok {
		return e, errNotFound("Event not found")
	}
	return e, nil
}
