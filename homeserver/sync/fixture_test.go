package sync

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/clock"
)

// fixture is a Syncer on real storage (SQLite, and PostgreSQL when the
// tests have it) with the local notifier and ephemeral state, and small
// stand-ins for what the homeserver gives: every event visible, events
// formatted as their IDs, no gaps, no sticky events.
type fixture struct {
	t      *testing.T
	ctx    context.Context
	db     *storage.DB
	notes  *LocalNotifier
	eph    *LocalEphemeral
	clock  *clock.Fake
	syncer *Syncer
	// state is each room's current state, for appending events.
	state map[string]storage.StateMap
	snap  map[string]int64
	depth map[string]int64
	n     int
}

func newFixture(t *testing.T, b storagetest.Backend) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	notes := NewLocalNotifier(0)
	db, err := storage.Open(ctx, b.Open(t), func(pos int64, keys []string) { notes.Notify(pos, keys...) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	max, err := db.MaxPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	notes.Start(max)
	f := &fixture{t: t, ctx: ctx, db: db, notes: notes, clock: clock.NewFake(time.Unix(1_800_000_000, 0)),
		state: map[string]storage.StateMap{}, snap: map[string]int64{}, depth: map[string]int64{}}
	f.eph = NewLocalEphemeral(f.clock)
	shutdown := make(chan struct{})
	t.Cleanup(func() { close(shutdown) })
	f.syncer, err = New(Config{Store: db, Notifier: notes, Ephemeral: f.eph, Clock: f.clock, Shutdown: shutdown,
		Visibility: allVisible{}, Formatter: idFormatter{}, Gaps: noGaps{}, Sticky: noSticky{},
		PushRules: fixedRules{}, Presence: scanAll{f.eph}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

type allVisible struct{}

func (allVisible) Visible(_ context.Context, _, _ string, _ int64, evs []storage.Event) ([]storage.Event, error) {
	return evs, nil
}

type idFormatter struct{}

func (idFormatter) ClientEvents(evs []storage.Event, _, _ string, _ int64) []any {
	out := make([]any, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.EventID)
	}
	return out
}

type noGaps struct{}

func (noGaps) CutAtGap(_ context.Context, _ string, evs []storage.Event, _ int64) ([]storage.Event, bool, error) {
	return evs, false, nil
}

type noSticky struct{}

func (noSticky) StickyEvents(context.Context, string, string, string, int64, int64, int64, []storage.Event) ([]any, error) {
	return nil, nil
}

type fixedRules struct{}

func (fixedRules) PushRulesContent(context.Context, string) (json.RawMessage, error) {
	return json.RawMessage(`{"global":{}}`), nil
}

type scanAll struct{ eph *LocalEphemeral }

func (s scanAll) ScanPresence(context.Context) int64 {
	n, _ := s.eph.ScanPresence(func(string) bool { return true })
	return n
}

// event appends an event to roomID and returns its ID and position. A
// state event's content for m.room.member is {"membership": ...}.
func (f *fixture) event(roomID, evType, sender string, stateKey *string, content map[string]any) (string, int64) {
	f.t.Helper()
	if f.state[roomID] == nil {
		f.state[roomID] = storage.StateMap{}
		if err := f.db.WriteTx(f.ctx, func(tx *storage.Tx) error {
			return tx.CreateRoom(f.ctx, storage.Room{RoomID: roomID, Version: "10", Creator: sender})
		}); err != nil {
			f.t.Fatal(err)
		}
	}
	f.n++
	id := fmt.Sprintf("$e%d", f.n)
	f.depth[roomID]++
	pdu, _ := json.Marshal(map[string]any{"type": evType, "sender": sender, "room_id": roomID, "content": content, "state_key": stateKey})
	ne := storage.NewEvent{Event: storage.Event{EventID: id, RoomID: roomID, Type: evType, StateKey: stateKey, Sender: sender,
		OriginTS: f.clock.Now().UnixMilli(), Depth: f.depth[roomID], JSON: pdu, SnapBefore: f.snap[roomID]}, Before: f.state[roomID]}
	if m, ok := content["membership"].(string); ok {
		ne.Membership = m
	}
	var pos int64
	if err := f.db.WriteTx(f.ctx, func(tx *storage.Tx) error {
		var err error
		pos, err = tx.AppendEvent(f.ctx, ne)
		return err
	}); err != nil {
		f.t.Fatal(err)
	}
	if stateKey != nil {
		e, err := f.db.Event(f.ctx, id)
		if err != nil {
			f.t.Fatal(err)
		}
		f.snap[roomID] = e.SnapAfter
		next := storage.StateMap{}
		for k, v := range f.state[roomID] {
			next[k] = v
		}
		next[storage.StateKey{Type: evType, StateKey: *stateKey}] = id
		f.state[roomID] = next
	}
	return id, pos
}

func (f *fixture) join(roomID, userID string) (string, int64) {
	return f.event(roomID, "m.room.member", userID, &userID, map[string]any{"membership": "join"})
}

func (f *fixture) message(roomID, sender string) (string, int64) {
	return f.event(roomID, "m.room.message", sender, nil, map[string]any{"body": "hi"})
}

// build runs the syncer once for user (device "DEV") at committed, from
// since (nil: initial).
func (f *fixture) build(userID string, since *Token, committed int64) (*Response, bool) {
	f.t.Helper()
	ms, err := f.db.Memberships(f.ctx, userID)
	if err != nil {
		f.t.Fatal(err)
	}
	req := &Request{UserID: userID, DeviceID: "DEV", Since: since, Memberships: ms, NowMS: f.clock.Now().UnixMilli()}
	resp, empty, err := f.syncer.Build(f.ctx, req, committed)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp, empty
}

// token reads a response's next_batch.
func (f *fixture) token(resp *Response) *Token {
	f.t.Helper()
	tok, err := ParseToken(resp.NextBatch)
	if err != nil {
		f.t.Fatal(err)
	}
	return &tok
}

// at returns tok with every storage stream at pos.
func at(tok Token, pos int64) *Token {
	for _, id := range []StreamID{StreamRooms, StreamAccountData, StreamReceipts, StreamDeviceLists, StreamUnread} {
		tok.Set(id, pos)
	}
	return &tok
}

func forEachBackend(t *testing.T, fn func(t *testing.T, f *fixture)) {
	for _, b := range storagetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) { fn(t, newFixture(t, b)) })
	}
}

func ids(evs []any) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}
