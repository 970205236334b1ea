package rooms

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// MaxEventBytes is the spec's limit on a whole PDU (spec: Client-Server
// API, "Size limits": 65,536 bytes of canonical JSON).
const MaxEventBytes = 65536

// Config is what appending to rooms needs of the server.
type Config struct {
	// ServerName signs local events and decides which senders are ours.
	ServerName string
	// KeyID and SigningKey sign local events. Required.
	KeyID      string
	SigningKey ed25519.PrivateKey
	// Now is the clock (origin_server_ts, received times). Default time.Now.
	Now func() time.Time
	// CheckJSON refuses a built local event that not every parser would
	// read the same (duplicate keys, lone surrogates, floats); its error
	// becomes ErrBadEvent. Default: none beyond the library's.
	CheckJSON func([]byte) error
	// AfterAppend runs inside the write after an event joined a room's
	// timeline, local or remote. Optional.
	AfterAppend func(ctx context.Context, tx *storage.Tx, a Appended) error
}

// Appended is what AfterAppend learns of an appended event.
type Appended struct {
	Event storage.Event
	// Local: built here from a local user's request.
	Local bool
	// Current: the event is in the room's current state now (a state
	// event that was not overruled by state resolution).
	Current bool
}

// Rooms appends events to rooms. It is safe for concurrent use; each
// append happens in the caller's write transaction (Open).
type Rooms struct {
	cfg Config
	log *slog.Logger
	// statePDUs caches parsed state events across writes: auth checks
	// read the same few again and again.
	statePDUs pduCache
}

// New checks cfg and returns a Rooms.
func New(cfg Config, log *slog.Logger) (*Rooms, error) {
	if cfg.ServerName == "" || cfg.KeyID == "" || len(cfg.SigningKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("rooms: config needs the server name, key ID and an ed25519 signing key")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Rooms{cfg: cfg, log: log.With("component", "rooms")}, nil
}

func (r *Rooms) nowMS() int64 { return r.cfg.Now().UnixMilli() }

// SupportedVersions are the room versions this server creates and joins.
var SupportedVersions = map[string]bool{"10": true, "11": true}

// Version returns the implementation of a room version, ErrUnsupportedVersion
// when the library has none.
func Version(v string) (gomatrixserverlib.IRoomVersion, error) {
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(v))
	if err != nil {
		return nil, refuse(ErrUnsupportedVersion, "room version %q is not supported", v)
	}
	return ver, nil
}

// UserIDForSender maps a sender to a user ID: outside pseudo-ID room
// versions they are the same string.
func UserIDForSender(_ spec.RoomID, senderID spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(senderID), true)
}

// ServerOf returns the server name of a user ID ("" if malformed).
func ServerOf(userID string) string {
	for i := 0; i < len(userID); i++ {
		if userID[i] == ':' {
			return userID[i+1:]
		}
	}
	return ""
}

// Writer appends events to one room inside one write transaction, keeping
// the room's extremities and state current in memory so that several
// events (createRoom) chain correctly.
type Writer struct {
	r     *Rooms
	tx    *storage.Tx
	room  storage.Room
	ver   gomatrixserverlib.IRoomVersion
	state storage.StateMap
	l     *Loader
	// last is the stream position of the latest appended event.
	last int64
}

// Open starts a Writer on roomID in tx: ErrNotFound when the room is
// unknown, ErrUnsupportedVersion when its version is not implemented.
func (r *Rooms) Open(ctx context.Context, tx *storage.Tx, roomID string) (*Writer, error) {
	room, err := tx.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, refuse(ErrNotFound, "Unknown room %s", roomID)
	}
	if err != nil {
		return nil, err
	}
	ver, err := Version(room.Version)
	if err != nil {
		return nil, err
	}
	state, err := tx.Snapshot(ctx, room.CurrentSnapshot)
	if err != nil {
		return nil, err
	}
	return &Writer{r: r, tx: tx, room: room, ver: ver, state: state, l: r.txLoader(tx, ver)}, nil
}

// Room is the room as this writer sees it (frontier and snapshot after
// its appends).
func (w *Writer) Room() storage.Room { return w.room }

// Version is the room's version.
func (w *Writer) Version() gomatrixserverlib.IRoomVersion { return w.ver }

// State is the room's current state (do not modify).
func (w *Writer) State() storage.StateMap { return w.state }

// Last is the stream position of the latest event this writer appended.
func (w *Writer) Last() int64 { return w.last }

// Loader is the writer's PDU loader.
func (w *Writer) Loader() *Loader { return w.l }

// PDU loads a stored event of the room as a PDU.
func (w *Writer) PDU(ctx context.Context, eventID string) (gomatrixserverlib.PDU, error) {
	return w.l.PDU(ctx, eventID)
}

// StateEvent loads the current state event (typ, stateKey), nil if none.
func (w *Writer) StateEvent(ctx context.Context, typ, stateKey string) (gomatrixserverlib.PDU, error) {
	id, ok := w.state[storage.StateKey{Type: typ, StateKey: stateKey}]
	if !ok {
		return nil, nil
	}
	return w.l.PDU(ctx, id)
}

// CloneState copies a state map, with room for one more entry.
func CloneState(m storage.StateMap) storage.StateMap {
	out := make(storage.StateMap, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// SameState reports whether two state maps are equal.
func SameState(a, b storage.StateMap) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// EventRow is the storage row of a PDU.
func EventRow(p gomatrixserverlib.PDU, receivedMS int64) storage.Event {
	var sk *string
	if p.StateKey() != nil {
		k := *p.StateKey()
		sk = &k
	}
	return storage.Event{EventID: p.EventID(), RoomID: p.RoomID().String(), Type: p.Type(), StateKey: sk, Sender: string(p.SenderID()),
		OriginTS: int64(p.OriginServerTS()), ReceivedTS: receivedMS, Depth: p.Depth(), JSON: p.JSON()}
}
