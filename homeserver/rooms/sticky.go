package rooms

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// StickyKey is the top-level PDU key of an MSC4354 sticky event:
// "msc4354_sticky": {"duration_ms": N}. It sits outside "content", so it
// is covered by the content hash but dropped by redaction.
const StickyKey = "msc4354_sticky"

// makeSticky returns pdu with StickyKey added at the top level, hashed
// and signed again (spec: Server-Server API, "Calculating the content
// hash for an event", "Signing events").
func (w *Writer) makeSticky(pdu gomatrixserverlib.PDU, ms int64) (gomatrixserverlib.PDU, error) {
	fail := func(err error) (gomatrixserverlib.PDU, error) {
		return nil, fmt.Errorf("rooms: sticky event: %w", err)
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(pdu.JSON(), &ev); err != nil {
		return fail(err)
	}
	ev[StickyKey], _ = json.Marshal(map[string]int64{"duration_ms": ms})
	delete(ev, "signatures")
	delete(ev, "unsigned")
	delete(ev, "hashes")
	hashable, err := json.Marshal(ev)
	if err != nil {
		return fail(err)
	}
	if hashable, err = gomatrixserverlib.CanonicalJSON(hashable); err != nil {
		return fail(err)
	}
	sum := sha256.Sum256(hashable)
	ev["hashes"], _ = json.Marshal(map[string]spec.Base64Bytes{"sha256": sum[:]})
	unsigned, err := json.Marshal(ev)
	if err != nil {
		return fail(err)
	}
	redacted, err := w.ver.RedactEventJSON(unsigned)
	if err != nil {
		return fail(err)
	}
	cfg := &w.r.cfg
	signed, err := gomatrixserverlib.SignJSON(cfg.ServerName, gomatrixserverlib.KeyID(cfg.KeyID), cfg.SigningKey, redacted)
	if err != nil {
		return fail(err)
	}
	var sig struct {
		Signatures json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal(signed, &sig); err != nil {
		return fail(err)
	}
	ev["signatures"] = sig.Signatures
	full, err := json.Marshal(ev)
	if err != nil {
		return fail(err)
	}
	if full, err = gomatrixserverlib.CanonicalJSON(full); err != nil {
		return fail(err)
	}
	out, err := w.ver.NewEventFromTrustedJSON(full, false)
	if err != nil {
		return fail(err)
	}
	return out, nil
}
