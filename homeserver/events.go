package homeserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// maxEventBytes is the spec's limit on a whole PDU (spec: Client-Server
// API, "Size limits": 65536 bytes of canonical JSON).
const maxEventBytes = 65536

// defaultRoomVersion is what createRoom uses without room_version.
const defaultRoomVersion = gomatrixserverlib.RoomVersionV11

// supportedRoomVersions are the versions this server creates and joins.
var supportedRoomVersions = map[string]bool{"10": true, "11": true}

// userIDForSender maps a sender to a user ID: outside pseudo-ID room
// versions they are the same string.
func userIDForSender(_ spec.RoomID, senderID spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(senderID), true)
}

// txnInfo is the client transaction a local event came from.
type txnInfo struct {
	DeviceID string
	TxnID    string
}

// roomWriter appends local events to one room inside one write
// transaction, keeping the room's extremities and state current in memory
// so that several events (createRoom) chain correctly.
type roomWriter struct {
	s     *Server
	tx    *storage.Tx
	room  storage.Room
	ver   gomatrixserverlib.IRoomVersion
	state storage.StateMap
	// pdus caches state events already loaded, by event ID.
	pdus map[string]gomatrixserverlib.PDU
	// last is the stream position of the latest appended event.
	last int64
}

// openRoom starts a roomWriter for an existing room; 404 if unknown.
func (s *Server) openRoom(ctx context.Context, tx *storage.Tx, roomID string) (*roomWriter, error) {
	room, err := tx.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errNotFound("Unknown room %s", roomID)
	}
	if err != nil {
		return nil, err
	}
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(room.Version))
	if err != nil {
		return nil, merr(http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION", "room version %q is not supported", room.Version)
	}
	state, err := tx.Snapshot(ctx, room.CurrentSnapshot)
	if err != nil {
		return nil, err
	}
	return &roomWriter{s: s, tx: tx, room: room, ver: ver, state: state, pdus: make(map[string]gomatrixserverlib.PDU)}, nil
}

// pdu loads a stored event as a PDU.
func (w *roomWriter) pdu(ctx context.Context, eventID string) (gomatrixserverlib.PDU, error) {
	if p, ok := w.pdus[eventID]; ok {
		return p, nil
	}
	if p := w.s.statePDUs.get(eventID); p != nil {
		w.pdus[eventID] = p
		return p, nil
	}
	e, err := w.tx.Event(ctx, eventID)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", eventID, err)
	}
	p, err := w.ver.NewEventFromTrustedJSONWithEventID(e.EventID, e.JSON, e.RedactedBy != "")
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", eventID, err)
	}
	w.pdus[eventID] = p
	if e.StateKey != nil && e.RedactedBy == "" {
		w.s.statePDUs.put(eventID, p)
	}
	return p, nil
}

// pduCache keeps parsed state events, which auth checks read again and
// again. It is cleared when full; redaction drops the entry.
type pduCache struct {
	mu sync.Mutex // guards m
	m  map[string]gomatrixserverlib.PDU
}

const pduCacheSize = 8192

func (c *pduCache) get(id string) gomatrixserverlib.PDU {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[id]
}

func (c *pduCache) put(id string, p gomatrixserverlib.PDU) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= pduCacheSize {
		c.m = make(map[string]gomatrixserverlib.PDU)
	}
	c.m[id] = p
}

func (c *pduCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

// authEvents returns the current state events that auth rules consult for
// an event of this shape.
func (w *roomWriter) authEvents(ctx context.Context, proto *gomatrixserverlib.ProtoEvent) (*gomatrixserverlib.AuthEvents, error) {
	needed, err := gomatrixserverlib.StateNeededForProtoEvent(proto)
	if err != nil {
		return nil, errBadJSON("%v", err)
	}
	var pdus []gomatrixserverlib.PDU
	for _, t := range needed.Tuples() {
		id, ok := w.state[storage.StateKey{Type: t.EventType, StateKey: t.StateKey}]
		if !ok {
			continue
		}
		p, err := w.pdu(ctx, id)
		if err != nil {
			return nil, err
		}
		pdus = append(pdus, p)
	}
	return gomatrixserverlib.NewAuthEvents(pdus)
}

// newEvent is what a local client asks to send.
type newEvent struct {
	Sender   string
	Type     string
	StateKey *string
	Content  json.RawMessage
	Redacts  string
	Txn      *txnInfo
	// StickyMS makes the event an MSC4354 sticky event for that long
	// (rtc_sticky.go); 0 for an ordinary event.
	StickyMS int64
}

// append builds, signs, auth-checks and stores a local event. Nothing is
// stored when auth rules refuse it (403 M_FORBIDDEN) or it is too large
// (413 M_TOO_LARGE).
func (w *roomWriter) append(ctx context.Context, ne newEvent) (storage.Event, error) {
	proto := gomatrixserverlib.ProtoEvent{
		SenderID:   ne.Sender,
		RoomID:     w.room.RoomID,
		Type:       ne.Type,
		StateKey:   ne.StateKey,
		PrevEvents: w.room.Extremities,
		Redacts:    ne.Redacts,
		Depth:      w.room.Depth + 1,
		Content:    spec.RawJSON(ne.Content),
		Version:    w.ver,
	}
	if len(w.room.Extremities) == 0 {
		proto.PrevEvents = []string{}
	}
	auth, err := w.authEvents(ctx, &proto)
	if err != nil {
		return storage.Event{}, err
	}
	needed, _ := gomatrixserverlib.StateNeededForProtoEvent(&proto)
	refs, err := needed.AuthEventReferences(auth)
	if err != nil {
		return storage.Event{}, err
	}
	proto.AuthEvents = refs
	now := w.s.cfg.Now()
	pdu, err := w.ver.NewEventBuilderFromProtoEvent(&proto).Build(now, spec.ServerName(w.s.cfg.ServerName),
		gomatrixserverlib.KeyID(w.s.cfg.KeyID), w.s.cfg.SigningKey)
	if err != nil {
		var ve gomatrixserverlib.EventValidationError
		if errors.As(err, &ve) && ve.Code == gomatrixserverlib.EventValidationTooLarge {
			return storage.Event{}, errTooLarge("%s", ve.Message)
		}
		return storage.Event{}, errBadJSON("cannot build event: %v", err)
	}
	if ne.StickyMS > 0 {
		if pdu, err = w.makeSticky(pdu, ne.StickyMS); err != nil {
			return storage.Event{}, err
		}
	}
	if len(pdu.JSON()) > maxEventBytes {
		return storage.Event{}, errTooLarge("event is larger than %d bytes", maxEventBytes)
	}
	// Whatever route built it, a local event is signed only if every
	// server will read it the same (clientjson.go): a duplicate key here
	// would split the room across servers.
	if err := checkCanonicalJSON(pdu.JSON()); err != nil {
		return storage.Event{}, errBadJSON("event content is not canonical JSON: %v", err)
	}
	if err := gomatrixserverlib.Allowed(pdu, auth, userIDForSender); err != nil {
		w.s.log.Debug("event refused by auth rules", "room_id", w.room.RoomID, "type", ne.Type, "sender", ne.Sender, "err", err)
		return storage.Event{}, errForbidden("%v", err)
	}
	ev := storage.Event{
		EventID:    pdu.EventID(),
		RoomID:     w.room.RoomID,
		Type:       ne.Type,
		StateKey:   ne.StateKey,
		Sender:     ne.Sender,
		OriginTS:   int64(pdu.OriginServerTS()),
		ReceivedTS: now.UnixMilli(),
		Depth:      pdu.Depth(),
		JSON:       pdu.JSON(),
		SnapBefore: w.room.CurrentSnapshot,
	}
	if ne.Txn != nil {
		ev.TxnDevice, ev.TxnID = ne.Txn.DeviceID, ne.Txn.TxnID
	}
	var membership string
	if ne.StateKey != nil {
		if prevID, ok := w.state[storage.StateKey{Type: ne.Type, StateKey: *ne.StateKey}]; ok {
			prev, err := w.pdu(ctx, prevID)
			if err != nil {
				return storage.Event{}, err
			}
			ev.UnsignedExtra, _ = json.Marshal(map[string]any{
				"prev_content":   json.RawMessage(prev.Content()),
				"replaces_state": prevID,
				"prev_sender":    string(prev.SenderID()),
			})
		}
		if ne.Type == spec.MRoomMember {
			membership, _ = pdu.Membership()
		}
	}
	pos, err := w.tx.AppendEvent(ctx, storage.NewEvent{Event: ev, Before: w.state, Membership: membership})
	if err != nil {
		return storage.Event{}, err
	}
	ev.Pos = pos
	// MatrixRTC: delayed state it supersedes, sticky records.
	if err := w.s.rtcAfterStore(ctx, w.tx, ev, true); err != nil {
		return storage.Event{}, err
	}
	if ne.Txn != nil {
		if err := w.tx.RecordTxn(ctx, ne.Sender, ne.Txn.DeviceID, ne.Txn.TxnID, ev.EventID); err != nil {
			return storage.Event{}, err
		}
	}
	if ne.StateKey != nil {
		w.state = cloneState(w.state)
		w.state[storage.StateKey{Type: ne.Type, StateKey: *ne.StateKey}] = ev.EventID
		w.pdus[ev.EventID] = pdu
		// The snapshot ID is assigned by AppendEvent; re-read the room row.
		room, err := w.tx.Room(ctx, w.room.RoomID)
		if err != nil {
			return storage.Event{}, err
		}
		w.room.CurrentSnapshot = room.CurrentSnapshot
	}
	w.room.Extremities = []string{ev.EventID}
	w.room.Depth = ev.Depth
	w.last = pos
	kind := "message"
	if ne.StateKey != nil {
		kind = "state"
	}
	w.s.metrics.eventsSent.WithLabelValues(kind).Inc()
	return ev, nil
}

func cloneState(m storage.StateMap) storage.StateMap {
	out := make(storage.StateMap, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// sendEventTx appends one local event to a room in its own write
// transaction (the storage writer wakes /sync on commit). A repeated client transaction returns the
// first event instead of sending again (spec: "Transaction identifiers").
func (s *Server) sendEventTx(ctx context.Context, roomID string, ne newEvent) (string, error) {
	var eventID string
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if ne.Txn != nil {
			id, err := tx.TxnEvent(ctx, ne.Sender, ne.Txn.DeviceID, ne.Txn.TxnID)
			if err != nil {
				return err
			}
			if id != "" {
				eventID = id
				return nil
			}
		}
		w, err := s.openRoom(ctx, tx, roomID)
		if err != nil {
			return err
		}
		if ne.Type == spec.MRoomRedaction {
			if err := w.applyRedaction(ctx, &ne); err != nil {
				return err
			}
		}
		ev, err := w.append(ctx, ne)
		if err != nil {
			return err
		}
		eventID = ev.EventID
		if ne.Type == spec.MRoomRedaction {
			return w.redactTarget(ctx, ne.Redacts, ev.EventID)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return eventID, nil
}
