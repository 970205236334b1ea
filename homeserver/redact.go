package homeserver

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// applyRedaction checks that the sender may redact ne.Redacts and puts the
// target where the room version wants it (spec: Client-Server API,
// "Redactions"; room version 11 moved redacts into content).
func (w *roomWriter) applyRedaction(ctx context.Context, ne *newEvent) error {
	if ne.Redacts == "" {
		// PUT /send/m.room.redaction names the target in content.redacts,
		// the room version 11 format (spec: Room Version 11, "Moving the
		// redacts key").
		var c struct {
			Redacts *string `json:"redacts"`
		}
		if err := json.Unmarshal(ne.Content, &c); err != nil {
			return errBadJSON("content.redacts must be an event ID")
		}
		if c.Redacts == nil || *c.Redacts == "" {
			return errMissingParam("a redaction needs content.redacts")
		}
		ne.Redacts = *c.Redacts
	}
	target, err := w.tx.Event(ctx, ne.Redacts)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && target.RoomID != w.room.RoomID) {
		return errNotFound("Unknown event %s", ne.Redacts)
	}
	if err != nil {
		return err
	}
	if target.Sender != ne.Sender {
		pl, err := w.powerLevels(ctx)
		if err != nil {
			return err
		}
		if pl.UserLevel(spec.SenderID(ne.Sender)) < pl.Redact {
			return errForbidden("You may only redact your own events")
		}
	}
	if w.ver.Version() != gomatrixserverlib.RoomVersionV10 {
		var content map[string]any
		if err := json.Unmarshal(ne.Content, &content); err != nil {
			return errBadJSON("%v", err)
		}
		content["redacts"] = ne.Redacts
		ne.Content, _ = json.Marshal(content)
	}
	return nil
}

// redactTarget stores the redacted form of the target event.
func (w *roomWriter) redactTarget(ctx context.Context, targetID, redactionID string) error {
	target, err := w.tx.Event(ctx, targetID)
	if err != nil {
		return err
	}
	if target.RedactedBy != "" {
		return nil
	}
	redacted, err := w.ver.RedactEventJSON(target.JSON)
	if err != nil {
		return err
	}
	// Stored events are canonical JSON, redacted ones too.
	if redacted, err = gomatrixserverlib.CanonicalJSON(redacted); err != nil {
		return err
	}
	delete(w.pdus, targetID)
	w.s.statePDUs.drop(targetID)
	return w.tx.Redact(ctx, targetID, redacted, redactionID)
}

// powerLevels returns the room's current power levels (defaults if none).
func (w *roomWriter) powerLevels(ctx context.Context) (*gomatrixserverlib.PowerLevelContent, error) {
	id, ok := w.state[storage.StateKey{Type: spec.MRoomPowerLevels}]
	if !ok {
		create, err := w.pdu(ctx, w.state[storage.StateKey{Type: spec.MRoomCreate}])
		if err != nil {
			return nil, err
		}
		pl := gomatrixserverlib.PowerLevelContent{}
		pl.Defaults()
		pl.Users = map[string]int64{string(create.SenderID()): 100}
		return &pl, nil
	}
	p, err := w.pdu(ctx, id)
	if err != nil {
		return nil, err
	}
	return p.PowerLevels()
}
