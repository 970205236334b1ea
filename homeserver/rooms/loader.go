package rooms

import (
	"context"
	"fmt"
	"sync"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// EventReader is where a Loader reads stored events: a *storage.Tx
// inside a write, a *storage.DB outside one.
type EventReader interface {
	Events(ctx context.Context, ids []string) ([]storage.Event, error)
}

// Parse is the one place a stored row becomes a PDU: the row's JSON is
// trusted (it was checked on the way in), its event ID is the stored one,
// and a redacted row is read as redacted.
func Parse(ver gomatrixserverlib.IRoomVersion, e storage.Event) (gomatrixserverlib.PDU, error) {
	p, err := ver.NewEventFromTrustedJSONWithEventID(e.EventID, e.JSON, e.RedactedBy != "")
	if err != nil {
		return nil, fmt.Errorf("rooms: stored event %s: %w", e.EventID, err)
	}
	return p, nil
}

// ParseIn is Parse for a row of a room of version v.
func ParseIn(v string, e storage.Event) (gomatrixserverlib.PDU, error) {
	ver, err := Version(v)
	if err != nil {
		return nil, err
	}
	return Parse(ver, e)
}

// Loader loads stored events of one room version as PDUs, by event ID,
// and keeps what it loaded. A loader made for a write (Rooms.TxLoader,
// Writer.Loader) also shares the parsed state events with later writes.
// A Loader is used by one goroutine.
type Loader struct {
	src EventReader
	ver gomatrixserverlib.IRoomVersion
	m   map[string]gomatrixserverlib.PDU
	// shared is the cross-write cache of state events (nil: none).
	shared *pduCache
}

// NewLoader returns a loader reading from src (outside a write: it does
// not feed the shared cache).
func NewLoader(src EventReader, ver gomatrixserverlib.IRoomVersion) *Loader {
	return &Loader{src: src, ver: ver, m: make(map[string]gomatrixserverlib.PDU)}
}

// TxLoader returns a loader reading inside the write tx, sharing parsed
// state events with other writes.
func (r *Rooms) TxLoader(tx *storage.Tx, ver gomatrixserverlib.IRoomVersion) *Loader {
	return r.txLoader(tx, ver)
}

func (r *Rooms) txLoader(tx *storage.Tx, ver gomatrixserverlib.IRoomVersion) *Loader {
	l := NewLoader(tx, ver)
	l.shared = &r.statePDUs
	return l
}

// Version is the room version the loader parses with.
func (l *Loader) Version() gomatrixserverlib.IRoomVersion { return l.ver }

// Add makes p known to the loader (an event being checked before it is
// stored).
func (l *Loader) Add(p gomatrixserverlib.PDU) { l.m[p.EventID()] = p }

// forget drops an event that changed (redacted) from the loader and the
// shared cache.
func (l *Loader) forget(id string) {
	delete(l.m, id)
	if l.shared != nil {
		l.shared.drop(id)
	}
}

// Load returns the PDUs of those of ids that are stored, in the order of
// ids; unknown ones are left out.
func (l *Loader) Load(ctx context.Context, ids []string) ([]gomatrixserverlib.PDU, error) {
	var need []string
	for _, id := range ids {
		if _, ok := l.m[id]; ok {
			continue
		}
		if l.shared != nil {
			if p := l.shared.get(id); p != nil {
				l.m[id] = p
				continue
			}
		}
		need = append(need, id)
	}
	if len(need) > 0 {
		evs, err := l.src.Events(ctx, need)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			p, err := Parse(l.ver, e)
			if err != nil {
				return nil, err
			}
			l.m[e.EventID] = p
			if l.shared != nil && e.StateKey != nil && e.RedactedBy == "" {
				l.shared.put(e.EventID, p)
			}
		}
	}
	out := make([]gomatrixserverlib.PDU, 0, len(ids))
	for _, id := range ids {
		if p, ok := l.m[id]; ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// PDU loads one event; ErrNotFound when it is not stored.
func (l *Loader) PDU(ctx context.Context, id string) (gomatrixserverlib.PDU, error) {
	ps, err := l.Load(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, refuse(ErrNotFound, "Unknown event %s", id)
	}
	return ps[0], nil
}

// AuthChain loads the auth events of pdus, transitively (those stored).
func (l *Loader) AuthChain(ctx context.Context, pdus []gomatrixserverlib.PDU) ([]gomatrixserverlib.PDU, error) {
	seen := map[string]bool{}
	var out []gomatrixserverlib.PDU
	frontier := pdus
	for len(frontier) > 0 {
		var ids []string
		for _, p := range frontier {
			for _, a := range p.AuthEventIDs() {
				if !seen[a] {
					seen[a] = true
					ids = append(ids, a)
				}
			}
		}
		next, err := l.Load(ctx, ids)
		if err != nil {
			return nil, err
		}
		out = append(out, next...)
		frontier = next
	}
	return out, nil
}

// StateMapOf turns state events into a state map; ErrBadEvent names one
// that is not a state event of roomID.
func StateMapOf(roomID string, pdus []gomatrixserverlib.PDU) (storage.StateMap, error) {
	out := make(storage.StateMap, len(pdus))
	for _, p := range pdus {
		if p.StateKey() == nil || p.RoomID().String() != roomID {
			return nil, refuse(ErrBadEvent, "%s is not a state event of the room", p.EventID())
		}
		out[storage.StateKey{Type: p.Type(), StateKey: *p.StateKey()}] = p.EventID()
	}
	return out, nil
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
