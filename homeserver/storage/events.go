package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// StateKey names one piece of room state.
type StateKey struct {
	Type     string
	StateKey string
}

// StateMap is a room's state: which event holds each piece.
type StateMap map[StateKey]string

func (m StateMap) clone() StateMap {
	out := make(StateMap, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// MarshalJSON encodes the map as {"type\u0000state_key": event_id}.
func (m StateMap) MarshalJSON() ([]byte, error) {
	flat := make(map[string]string, len(m))
	for k, v := range m {
		flat[k.Type+"\x00"+k.StateKey] = v
	}
	return json.Marshal(flat)
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (m *StateMap) UnmarshalJSON(b []byte) error {
	var flat map[string]string
	if err := json.Unmarshal(b, &flat); err != nil {
		return err
	}
	*m = make(StateMap, len(flat))
	for k, v := range flat {
		t, sk, _ := strings.Cut(k, "\x00")
		(*m)[StateKey{t, sk}] = v
	}
	return nil
}

// Event is a stored room event.
type Event struct {
	Pos        int64
	EventID    string
	RoomID     string
	Type       string
	StateKey   *string
	Sender     string
	OriginTS   int64
	ReceivedTS int64
	Depth      int64
	// JSON is the PDU as stored (redacted if RedactedBy is set).
	JSON       []byte
	SnapBefore int64
	SnapAfter  int64
	// UnsignedExtra is merged into unsigned when served (prev_content...).
	UnsignedExtra []byte
	TxnDevice     string
	TxnID         string
	RedactedBy    string
	Outlier       bool
}

// Room is the row of a room.
type Room struct {
	RoomID          string
	Version         string
	Creator         string
	CreatedTS       int64
	IsPublic        bool
	Extremities     []string
	Depth           int64
	CurrentSnapshot int64
}

const eventColumns = `pos, event_id, room_id, type, state_key, sender, origin_server_ts, received_ts, depth, json,
	snap_before, snap_after, unsigned_extra, txn_device, txn_id, redacted_by, outlier`

type scanner interface{ Scan(dest ...any) error }

func scanEvent(s scanner) (Event, error) {
	var e Event
	var sk, extra, txnDev, txnID, redBy sql.NullString
	var js string
	var outlier int
	if err := s.Scan(&e.Pos, &e.EventID, &e.RoomID, &e.Type, &sk, &e.Sender, &e.OriginTS, &e.ReceivedTS, &e.Depth, &js,
		&e.SnapBefore, &e.SnapAfter, &extra, &txnDev, &txnID, &redBy, &outlier); err != nil {
		return Event{}, err
	}
	if sk.Valid {
		k := sk.String
		e.StateKey = &k
	}
	e.JSON = []byte(js)
	if extra.Valid {
		e.UnsignedExtra = []byte(extra.String)
	}
	e.TxnDevice, e.TxnID, e.RedactedBy, e.Outlier = txnDev.String, txnID.String, redBy.String, outlier != 0
	return e, nil
}

func scanEvents(rows *sql.Rows) ([]Event, error) {
	defer rows.Close()
	var out []Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("storage: scan event: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// querier is what both a Tx and the read pool offer.
type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

func getRoom(ctx context.Context, q querier, roomID string) (Room, error) {
	var r Room
	var ext string
	var pub int
	err := q.QueryRowContext(ctx, `SELECT room_id, version, creator, created_ts, is_public, extremities, depth, current_snapshot
		FROM rooms WHERE room_id = $1`, roomID).Scan(&r.RoomID, &r.Version, &r.Creator, &r.CreatedTS, &pub, &ext, &r.Depth, &r.CurrentSnapshot)
	if errors.Is(err, sql.ErrNoRows) {
		return Room{}, ErrNotFound
	}
	if err != nil {
		return Room{}, fmt.Errorf("storage: room: %w", err)
	}
	r.IsPublic = pub != 0
	if err := json.Unmarshal([]byte(ext), &r.Extremities); err != nil {
		return Room{}, fmt.Errorf("storage: room extremities: %w", err)
	}
	return r, nil
}

func getSnapshot(ctx context.Context, q querier, id int64) (StateMap, error) {
	if id == 0 {
		return StateMap{}, nil
	}
	var js string
	if err := q.QueryRowContext(ctx, `SELECT state FROM state_snapshots WHERE id = $1`, id).Scan(&js); err != nil {
		return nil, fmt.Errorf("storage: snapshot %d: %w", id, err)
	}
	var m StateMap
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		return nil, fmt.Errorf("storage: snapshot %d: %w", id, err)
	}
	return m, nil
}

func getEvent(ctx context.Context, q querier, eventID string) (Event, error) {
	e, err := scanEvent(q.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM events WHERE event_id = $1`, eventID))
	if errors.Is(err, sql.ErrNoRows) {
		return Event{}, ErrNotFound
	}
	if err != nil {
		return Event{}, fmt.Errorf("storage: event: %w", err)
	}
	return e, nil
}

// getEvents loads events by ID, in chunks of up to maxInList. Each
// chunk's IN list is padded (by repeating its last ID, which matches
// nothing new) to the next power of two: the pools prepare every distinct
// statement once per connection and keep it (stmtcache.go, and pgx's
// per-connection statement caches on PostgreSQL), so one statement per
// list length would leave up to maxInList large statements on every
// connection; padded, there are at most inListShapes.
func getEvents(ctx context.Context, q querier, ids []string) ([]Event, error) {
	out := make([]Event, 0, len(ids))
	for start := 0; start < len(ids); start += maxInList {
		chunk := ids[start:min(start+maxInList, len(ids))]
		n := inListLen(len(chunk))
		args := make([]any, n)
		for i := range args {
			args[i] = chunk[min(i, len(chunk)-1)]
		}
		rows, err := q.QueryContext(ctx, `SELECT `+eventColumns+` FROM events WHERE event_id IN (`+inListPlaceholders(n)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("storage: events: %w", err)
		}
		evs, err := scanEvents(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	return out, nil
}

// Room returns a room's row, or ErrNotFound.
func (tx *Tx) Room(ctx context.Context, roomID string) (Room, error) {
	return getRoom(ctx, tx, roomID)
}

// Room returns a room's row, or ErrNotFound.
func (db *DB) Room(ctx context.Context, roomID string) (Room, error) {
	return getRoom(ctx, db.r, roomID)
}

// Snapshot loads a state snapshot (0 is the empty state). Snapshots never
// change once written, so they are cached; callers must not modify the
// map they get.
func (tx *Tx) Snapshot(ctx context.Context, id int64) (StateMap, error) {
	return tx.db.snapshots.get(id, func() (StateMap, error) { return getSnapshot(ctx, tx, id) })
}

// Snapshot loads a state snapshot (0 is the empty state); see Tx.Snapshot.
func (db *DB) Snapshot(ctx context.Context, id int64) (StateMap, error) {
	return db.snapshots.get(id, func() (StateMap, error) { return getSnapshot(ctx, db.r, id) })
}

// snapshotCache keeps recently used snapshots. It is cleared when full:
// simpler than an LRU, and a room's current snapshot is back after one miss.
// Full is counted in state entries, not snapshots: a room's snapshots grow
// with its state (every user who ever joined keeps a member entry), so a
// cap on their number alone let the cache grow with the rooms' history
// (the soak's heap grew by 47 MiB in its last 20 minutes this way).
type snapshotCache struct {
	mu      sync.Mutex // guards m and entries
	m       map[int64]StateMap
	entries int // sum of len over m
}

// snapshotCacheEntries bounds the state entries held, about 150 bytes
// each: some 15 MiB.
const snapshotCacheEntries = 100_000

func (c *snapshotCache) get(id int64, load func() (StateMap, error)) (StateMap, error) {
	c.mu.Lock()
	s, ok := c.m[id]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := load()
	if err != nil {
		return nil, err
	}
	c.put(id, s)
	return s, nil
}

// put caches s unless it alone is over the bound.
func (c *snapshotCache) put(id int64, s StateMap) {
	if len(s) > snapshotCacheEntries {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; ok {
		return
	}
	if c.m == nil || c.entries+len(s) > snapshotCacheEntries {
		c.m, c.entries = make(map[int64]StateMap), 0
	}
	c.m[id] = s
	c.entries += len(s)
}

// maxInList is the most IDs one IN list carries; inListShapes is how many
// distinct list lengths inListLen hands out (1, 2, 4, ... 512).
const (
	maxInList    = 512
	inListShapes = 10
)

// inListLen is the padded length of an IN list of n (1 <= n <= maxInList)
// values: the next power of two.
func inListLen(n int) int {
	l := 1
	for l < n {
		l *= 2
	}
	return l
}

// inListPlaceholders is "$1,$2,...,$n".
func inListPlaceholders(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(i))
	}
	return b.String()
}

// Events loads events by ID, in no particular order; unknown IDs are absent.
func (tx *Tx) Events(ctx context.Context, ids []string) ([]Event, error) {
	return getEvents(ctx, tx, ids)
}

// Events loads events by ID, in no particular order; unknown IDs are absent.
func (db *DB) Events(ctx context.Context, ids []string) ([]Event, error) {
	return getEvents(ctx, db.r, ids)
}

// Event loads one event, or returns ErrNotFound.
func (db *DB) Event(ctx context.Context, id string) (Event, error) { return getEvent(ctx, db.r, id) }

// Event loads one event, or returns ErrNotFound.
func (tx *Tx) Event(ctx context.Context, id string) (Event, error) { return getEvent(ctx, tx, id) }

// CreateRoom inserts a room row; ErrExists if the ID is taken.
func (tx *Tx) CreateRoom(ctx context.Context, r Room) error {
	res, err := tx.exec(ctx, `INSERT INTO rooms (room_id, version, creator, created_ts, is_public) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (room_id) DO NOTHING`, r.RoomID, r.Version, r.Creator, r.CreatedTS, boolInt(r.IsPublic))
	if err != nil {
		return fmt.Errorf("storage: create room: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

// SetRoomPublic sets whether the room is listed in the public room directory.
func (db *DB) SetRoomPublic(ctx context.Context, roomID string, public bool) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `UPDATE rooms SET is_public = $1 WHERE room_id = $2`, boolInt(public), roomID)
		return err
	})
}

// NewEvent is an event to append to a room's timeline.
type NewEvent struct {
	Event
	// Before is the state before the event (the snapshot Event.SnapBefore).
	Before StateMap
	// Membership is the content.membership of an m.room.member event.
	Membership string
}

// AppendEvent stores an event that extends the room's DAG from all its
// current forward extremities (the local case: the event's prev_events are
// the room's extremities), updates the current state, and returns the
// event's stream position. SnapBefore must be the room's current snapshot.
func (tx *Tx) AppendEvent(ctx context.Context, ne NewEvent) (int64, error) {
	e := ne.Event
	pos, err := tx.nextPos(ctx)
	if err != nil {
		return 0, err
	}
	e.SnapAfter = e.SnapBefore
	if e.StateKey != nil {
		after := ne.Before.clone()
		after[StateKey{e.Type, *e.StateKey}] = e.EventID
		js, err := json.Marshal(after)
		if err != nil {
			return 0, fmt.Errorf("storage: snapshot: %w", err)
		}
		if err := tx.queryRow(ctx, `INSERT INTO state_snapshots (room_id, state) VALUES ($1, $2) RETURNING id`, e.RoomID, string(js)).Scan(&e.SnapAfter); err != nil {
			return 0, fmt.Errorf("storage: snapshot: %w", err)
		}
		if _, err := tx.exec(ctx, `INSERT INTO current_state (room_id, type, state_key, event_id, membership, pos)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id,
				membership = excluded.membership, pos = excluded.pos`,
			e.RoomID, e.Type, *e.StateKey, e.EventID, nullString(ne.Membership), pos); err != nil {
			return 0, fmt.Errorf("storage: current state: %w", err)
		}
	}
	var sk, extra any
	if e.StateKey != nil {
		sk = *e.StateKey
	}
	if len(e.UnsignedExtra) > 0 {
		extra = string(e.UnsignedExtra)
	}
	if _, err := tx.exec(ctx, `INSERT INTO events (pos, event_id, room_id, type, state_key, sender, origin_server_ts, received_ts,
		depth, json, snap_before, snap_after, unsigned_extra, txn_device, txn_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		pos, e.EventID, e.RoomID, e.Type, sk, e.Sender, e.OriginTS, e.ReceivedTS, e.Depth, string(e.JSON),
		e.SnapBefore, e.SnapAfter, extra, nullString(e.TxnDevice), nullString(e.TxnID)); err != nil {
		return 0, fmt.Errorf("storage: insert event: %w", err)
	}
	tx.touch(e.RoomID)
	e.Pos = pos
	if len(e.UnsignedExtra) == 0 {
		e.UnsignedExtra = nil // as read back from a NULL column
	}
	tx.win.events = append(tx.win.events, e)
	if e.Type == "m.room.member" && e.StateKey != nil {
		tx.touch(*e.StateKey, KeyMembers(e.RoomID))
	}
	ext, _ := json.Marshal([]string{e.EventID})
	if _, err := tx.exec(ctx, `UPDATE rooms SET extremities = $1, depth = $2, current_snapshot = $3 WHERE room_id = $4`,
		string(ext), e.Depth, e.SnapAfter, e.RoomID); err != nil {
		return 0, fmt.Errorf("storage: update room: %w", err)
	}
	return pos, nil
}

// Redact replaces an event's JSON by its redacted form.
func (tx *Tx) Redact(ctx context.Context, eventID string, redactedJSON []byte, redactedBy string) error {
	_, err := tx.exec(ctx, `UPDATE events SET json = $1, redacted_by = $2 WHERE event_id = $3`, string(redactedJSON), redactedBy, eventID)
	if err != nil {
		return fmt.Errorf("storage: redact: %w", err)
	}
	tx.win.redacted = true
	return nil
}

// TxnEvent returns the event ID a client transaction produced, or "".
func (tx *Tx) TxnEvent(ctx context.Context, userID, deviceID, txnID string) (string, error) {
	var id string
	err := tx.queryRow(ctx, `SELECT event_id FROM txns WHERE user_id = $1 AND device_id = $2 AND txn_id = $3`, userID, deviceID, txnID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("storage: txn: %w", err)
	}
	return id, nil
}

// RecordTxn remembers which event a client transaction produced.
func (tx *Tx) RecordTxn(ctx context.Context, userID, deviceID, txnID, eventID string) error {
	_, err := tx.exec(ctx, `INSERT INTO txns (user_id, device_id, txn_id, event_id) VALUES ($1, $2, $3, $4)`, userID, deviceID, txnID, eventID)
	if err != nil {
		return fmt.Errorf("storage: record txn: %w", err)
	}
	return nil
}
