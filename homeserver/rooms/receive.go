package rooms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Steps 1–3 of "Checks performed on receipt of a PDU" (spec:
// Server-Server API): the ones that need no room state. The federation
// code fetches the PDU and the keys; the checks are here.

// Arrival says how a PDU reached us.
type Arrival int

const (
	// Pushed: sent by its origin (/send, send_join, send_leave, invite):
	// the origin's own new event, so a content hash mismatch is forgery.
	Pushed Arrival = iota
	// Pulled: history we asked a server for (get_missing_events, /event,
	// /state, /state_ids, /backfill). Servers serve redacted events in
	// redacted form, so a content hash mismatch is not refused: the event
	// is kept redacted, its signatures still checked (step 3).
	Pulled
)

// CheckFormat is step 1 on the bytes: at most MaxEventBytes
// (ErrTooLarge), canonical JSON by Config.CheckJSON (integers only,
// within ±(2^53−1), no duplicate keys), and read the same by every
// parser (ErrBadEvent).
func (r *Rooms) CheckFormat(raw []byte) error {
	if len(raw) > MaxEventBytes {
		return refuse(ErrTooLarge, "larger than %d bytes", MaxEventBytes)
	}
	if r.cfg.CheckJSON != nil {
		if err := r.cfg.CheckJSON(raw); err != nil {
			return refuse(ErrBadEvent, "%v", err)
		}
	}
	if err := SameWhenReparsed(raw); err != nil {
		return refuse(ErrBadEvent, "%v", err)
	}
	return nil
}

// SameWhenReparsed checks that raw reads the same to every parser: its
// canonical form equals that of the value a plain JSON parse finds in it.
// The hash and signatures are over the canonical form (spec: Appendices,
// "Canonical JSON"): JSON whose canonical form says something else than a
// plain parse (a duplicate key, invalid UTF-8, a lone surrogate escape)
// would be checked as one event and read as another.
func SameWhenReparsed(raw []byte) error {
	if !utf8.Valid(raw) {
		return errors.New("event is not valid UTF-8")
	}
	canon, err := gomatrixserverlib.CanonicalJSON(raw)
	if err != nil {
		return fmt.Errorf("event is not canonicalisable: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	again, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if canon2, err := gomatrixserverlib.CanonicalJSON(again); err != nil || !bytes.Equal(canon, canon2) {
		return errors.New("event is not canonical JSON: a duplicate key or an invalid string escape")
	}
	return nil
}

// RoomOf reads room_id from a raw PDU (ErrBadEvent without one).
func RoomOf(raw []byte) (string, error) {
	var h struct {
		RoomID string `json:"room_id"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return "", refuse(ErrBadEvent, "%v", err)
	}
	if h.RoomID == "" {
		return "", refuse(ErrBadEvent, "no room_id")
	}
	return h.RoomID, nil
}

// CheckReceived parses raw (which passed CheckFormat) as a PDU of room
// and runs steps 2 and 3: the content hash (a pushed PDU whose hash does
// not match is refused; a pulled one is kept redacted) and, when keys is
// not nil, the signatures of the sending servers (nil: an invite checked
// before the invitee's server signed it). Refusals after the parse name
// the event ID (RefusedID).
func (r *Rooms) CheckReceived(ctx context.Context, raw []byte, room storage.Room, how Arrival, keys gomatrixserverlib.JSONVerifier) (gomatrixserverlib.PDU, gomatrixserverlib.IRoomVersion, error) {
	ver, err := Version(room.Version)
	if err != nil {
		return nil, nil, err
	}
	pdu, err := ver.NewEventFromUntrustedJSON(raw)
	if err != nil {
		return nil, nil, refuse(ErrBadEvent, "%v", err)
	}
	// From here on the event has an ID, which /send's answer names.
	if pdu.Redacted() && how == Pushed {
		// The library redacts an event whose content hash does not match.
		return nil, nil, refuseEvent(pdu.EventID(), ErrBadEvent, "content hash mismatch")
	}
	if pdu.RoomID().String() != room.RoomID {
		return nil, nil, refuseEvent(pdu.EventID(), ErrBadEvent, "room mismatch")
	}
	if keys != nil {
		if err := gomatrixserverlib.VerifyEventSignatures(ctx, pdu, keys, UserIDForSender); err != nil {
			return nil, nil, refuseEvent(pdu.EventID(), ErrBadEvent, "signatures: %v", err)
		}
	}
	return pdu, ver, nil
}
