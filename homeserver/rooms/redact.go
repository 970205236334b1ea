package rooms

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Redactions (spec: Client-Server API, "Redactions"; Room Version 11,
// "Moving the redacts key"; Room Versions 3+, "Handling redactions": a
// redaction passes the auth rules whatever it names, and is applied to
// its target only once the target is known and only if the two senders
// share a server or the redacter has the redact power level).

// redactsOf is the target of a redaction: from room version 11 on it is
// content.redacts (spec: Room Version 11, "Moving the redacts key"); the
// library reads only the top-level key, which older versions use and
// which servers may still send alongside.
func redactsOf(p gomatrixserverlib.PDU) string {
	if r := p.Redacts(); r != "" {
		return r
	}
	var c struct {
		Redacts string `json:"redacts"`
	}
	if p.Type() == spec.MRoomRedaction && json.Unmarshal(p.Content(), &c) == nil {
		return c.Redacts
	}
	return ""
}

// mayRedact reports whether redacter may redact an event of targetSender
// by the power levels of state. A client of ours may redact its own
// events without power; another server's redaction may also redact
// events of its own server's users (sameServer).
func (l *Loader) mayRedact(ctx context.Context, state storage.StateMap, redacter, targetSender string, sameServer bool) (bool, error) {
	if redacter == targetSender || sameServer && ServerOf(redacter) == ServerOf(targetSender) {
		return true, nil
	}
	pl, err := l.PowerLevels(ctx, state)
	if err != nil {
		return false, err
	}
	return pl.UserLevel(spec.SenderID(redacter)) >= pl.Redact, nil
}

// checkLocalRedaction checks that ev's sender may redact its target and
// puts the target where the room version wants it.
func (w *Writer) checkLocalRedaction(ctx context.Context, ev *Event) error {
	if ev.Redacts == "" {
		// PUT /send/m.room.redaction names the target in content.redacts,
		// the room version 11 format.
		var c struct {
			Redacts *string `json:"redacts"`
		}
		if err := json.Unmarshal(ev.Content, &c); err != nil {
			return refuse(ErrBadEvent, "content.redacts must be an event ID")
		}
		if c.Redacts == nil || *c.Redacts == "" {
			return refuse(ErrMissingParam, "a redaction needs content.redacts")
		}
		ev.Redacts = *c.Redacts
	}
	target, err := w.tx.Event(ctx, ev.Redacts)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && target.RoomID != w.room.RoomID) {
		return refuse(ErrNotFound, "Unknown event %s", ev.Redacts)
	}
	if err != nil {
		return err
	}
	ok, err := w.l.mayRedact(ctx, w.state, ev.Sender, target.Sender, false)
	if err != nil {
		return err
	}
	if !ok {
		return refuse(ErrForbidden, "You may only redact your own events")
	}
	if w.ver.Version() != gomatrixserverlib.RoomVersionV10 {
		var content map[string]any
		if err := json.Unmarshal(ev.Content, &content); err != nil {
			return refuse(ErrBadEvent, "%v", err)
		}
		content["redacts"] = ev.Redacts
		ev.Content, _ = json.Marshal(content)
	}
	return nil
}

// redactLocal stores the redacted form of a local redaction's target.
func (w *Writer) redactLocal(ctx context.Context, targetID, redactionID string) error {
	target, err := w.tx.Event(ctx, targetID)
	if err != nil || target.RedactedBy != "" {
		return err
	}
	return w.storeRedacted(ctx, target, redactionID)
}

// storeRedacted replaces target by its redacted form (canonical JSON, as
// every stored event) and forgets its parsed form.
func (w *Writer) storeRedacted(ctx context.Context, target storage.Event, redactionID string) error {
	redacted, err := w.ver.RedactEventJSON(target.JSON)
	if err != nil {
		return err
	}
	if redacted, err = gomatrixserverlib.CanonicalJSON(redacted); err != nil {
		return err
	}
	w.l.forget(target.EventID)
	return w.tx.Redact(ctx, target.EventID, redacted, redactionID)
}

// applyRemoteRedactions redacts what a received event's arrival settles:
// the target of a redaction (or, when the target is unknown, a note to
// apply it on the target's arrival), or an earlier redaction's target
// that arrived only now. before is the state before pdu.
func (w *Writer) applyRemoteRedactions(ctx context.Context, pdu gomatrixserverlib.PDU, before storage.StateMap) error {
	if pdu.Type() == spec.MRoomRedaction {
		targetID := redactsOf(pdu)
		if targetID == "" {
			return nil
		}
		target, err := w.tx.Event(ctx, targetID)
		if errors.Is(err, storage.ErrNotFound) {
			return w.tx.AddPendingRedaction(ctx, targetID, pdu.EventID())
		}
		if err != nil || target.RoomID != pdu.RoomID().String() || target.RedactedBy != "" {
			return err
		}
		return w.redactIfAllowed(ctx, pdu, target, before)
	}
	ids, err := w.tx.TakePendingRedactions(ctx, pdu.EventID())
	if err != nil || len(ids) == 0 {
		return err
	}
	redactions, err := w.tx.Events(ctx, ids)
	if err != nil {
		return err
	}
	for _, r := range redactions {
		rp, err := w.l.PDU(ctx, r.EventID)
		if err != nil || redactsOf(rp) != pdu.EventID() || r.RoomID != pdu.RoomID().String() {
			continue
		}
		target, err := w.tx.Event(ctx, pdu.EventID())
		if err != nil || target.RedactedBy != "" {
			return err
		}
		st, err := w.tx.Snapshot(ctx, r.SnapBefore)
		if err != nil {
			return err
		}
		if err := w.redactIfAllowed(ctx, rp, target, st); err != nil {
			return err
		}
	}
	return nil
}

// redactIfAllowed stores target's redacted form if redaction, judged by
// the state before it, may redact it.
func (w *Writer) redactIfAllowed(ctx context.Context, redaction gomatrixserverlib.PDU, target storage.Event, state storage.StateMap) error {
	ok, err := w.l.mayRedact(ctx, state, string(redaction.SenderID()), target.Sender, true)
	if err != nil {
		return err
	}
	if !ok {
		w.r.log.Info("remote redaction not applied: no power to redact another server's event",
			"redaction", redaction.EventID(), "target", target.EventID)
		return nil
	}
	return w.storeRedacted(ctx, target, redaction.EventID())
}
