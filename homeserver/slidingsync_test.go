package homeserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

const ssPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

// ssResp is a decoded sliding sync response.
type ssResp struct {
	Pos   string `json:"pos"`
	Lists map[string]struct {
		Count int `json:"count"`
	} `json:"lists"`
	Rooms map[string]struct {
		Name          string            `json:"name"`
		Initial       bool              `json:"initial"`
		IsDM          bool              `json:"is_dm"`
		Membership    string            `json:"membership"`
		InviteState   []json.RawMessage `json:"invite_state"`
		RequiredState []clientEvent     `json:"required_state"`
		Timeline      []clientEvent     `json:"timeline"`
		NumLive       int               `json:"num_live"`
		Limited       bool              `json:"limited"`
		BumpStamp     int64             `json:"bump_stamp"`
		JoinedCount   *int              `json:"joined_count"`
		Notifications int               `json:"notification_count"`
		Heroes        []ssHero          `json:"heroes"`
	} `json:"rooms"`
	Extensions struct {
		ToDevice *struct {
			NextBatch string            `json:"next_batch"`
			Events    []json.RawMessage `json:"events"`
		} `json:"to_device"`
		E2EE *struct {
			OTK         map[string]int `json:"device_one_time_keys_count"`
			DeviceLists *struct {
				Changed []string `json:"changed"`
			} `json:"device_lists"`
		} `json:"e2ee"`
		AccountData *struct {
			Global []struct {
				Type string `json:"type"`
			} `json:"global"`
			Rooms map[string][]json.RawMessage `json:"rooms"`
		} `json:"account_data"`
		Receipts *struct {
			Rooms map[string]json.RawMessage `json:"rooms"`
		} `json:"receipts"`
		Typing *struct {
			Rooms map[string]struct {
				Content struct {
					UserIDs []string `json:"user_ids"`
				} `json:"content"`
			} `json:"rooms"`
		} `json:"typing"`
	} `json:"extensions"`
}

// slide sends one sliding sync request and decodes a 200 answer.
func slide(t testing.TB, ts *testServer, cli *mautrix.Client, pos string, timeoutMS int, body any) ssResp {
	t.Helper()
	r := slideRaw(t, ts, cli, pos, timeoutMS, body)
	if r.Status != http.StatusOK {
		t.Fatalf("sliding sync: %d %s", r.Status, r.Raw)
	}
	var out ssResp
	if err := json.Unmarshal(r.Raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func slideRaw(t testing.TB, ts *testServer, cli *mautrix.Client, pos string, timeoutMS int, body any) rawResp {
	t.Helper()
	q := fmt.Sprintf("?timeout=%d", timeoutMS)
	if pos != "" {
		q += "&pos=" + pos
	}
	js, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, ts.URL+ssPath+q, bytes.NewReader(js))
	req.Header.Set("Authorization", "Bearer "+cli.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	out := rawResp{Status: resp.StatusCode, Raw: buf.Bytes()}
	_ = json.Unmarshal(out.Raw, &out.Body)
	return out
}

func list(ranges [][2]int, limit int, rs [][2]string, filters map[string]any) map[string]any {
	l := map[string]any{"ranges": ranges, "timeline_limit": limit, "required_state": rs}
	if filters != nil {
		l["filters"] = filters
	}
	return l
}

func roomIDs[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestSlidingSyncAdvertised(t *testing.T) {
	ts := newTestServer(t, storagetest.Backend{Name: "sqlite"})
	r := ts.do(t, http.MethodGet, "/_matrix/client/versions", "", nil)
	if uf, _ := r.Body["unstable_features"].(map[string]any); uf["org.matrix.simplified_msc3575"] != true {
		t.Fatalf("/versions: %s", r.Raw)
	}
}

func TestSlidingSyncRangesAndIncrements(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		rooms := make([]id.RoomID, 5)
		for i := range rooms {
			r, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: fmt.Sprint("room ", i), Invite: []id.UserID{bob.UserID}})
			if err != nil {
				t.Fatal(err)
			}
			rooms[i] = r.RoomID
			if _, err := bob.JoinRoomByID(ctx, r.RoomID); err != nil {
				t.Fatal(err)
			}
		}
		// Bump order: room 0 newest, then 1, ... (messages in reverse).
		for i := len(rooms) - 1; i >= 0; i-- {
			if _, err := alice.SendText(ctx, rooms[i], fmt.Sprint("msg ", i)); err != nil {
				t.Fatal(err)
			}
		}
		// Notifications are counted just after the events are stored.
		testkit.Eventually(t, 20*time.Second, "room 0's message is counted", func() bool {
			n, _, err := ts.db.UnreadCounts(ctx, string(bob.UserID), string(rooms[0]))
			return err == nil && n == 1
		})
		body := map[string]any{"conn_id": "main", "lists": map[string]any{"all": list([][2]int{{0, 2}}, 1, nil, nil)}}
		r := slide(t, ts, bob, "", 0, body)
		if r.Lists["all"].Count != 5 {
			t.Fatalf("count %d", r.Lists["all"].Count)
		}
		want := []string{string(rooms[0]), string(rooms[1]), string(rooms[2])}
		sort.Strings(want)
		if got := roomIDs(r.Rooms); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("rooms in range [0,2]: %v, want %v", got, want)
		}
		r0 := r.Rooms[string(rooms[0])]
		if !r0.Initial || len(r0.Timeline) != 1 || r0.Name != "room 0" || r0.BumpStamp == 0 || r0.JoinedCount == nil || *r0.JoinedCount != 2 {
			t.Fatalf("room 0: %+v", r0)
		}
		if r0.Notifications != 1 {
			t.Fatalf("room 0 notification_count %d", r0.Notifications)
		}
		// A message in room 4 bumps it into the range: it comes in full.
		sent, err := alice.SendText(ctx, rooms[4], "bump")
		if err != nil {
			t.Fatal(err)
		}
		r = slide(t, ts, bob, r.Pos, 10000, body)
		r4, ok := r.Rooms[string(rooms[4])]
		if !ok || !r4.Initial || len(r4.Timeline) != 1 || r4.Timeline[0].EventID != string(sent.EventID) {
			t.Fatalf("bumped room 4: %v", r.Rooms)
		}
		// A message in a room already sent: only the new event.
		sent2, err := alice.SendText(ctx, rooms[0], "more")
		if err != nil {
			t.Fatal(err)
		}
		r = slide(t, ts, bob, r.Pos, 10000, body)
		r0 = r.Rooms[string(rooms[0])]
		if r0.Initial || len(r0.Timeline) != 1 || r0.Timeline[0].EventID != string(sent2.EventID) || r0.NumLive != 1 {
			t.Fatalf("incremental room 0: %+v (rooms %v)", r0, roomIDs(r.Rooms))
		}
		// Nothing new: a long-poll ends at its timeout with no rooms. (The
		// notification of "more" is stored just after it and may come
		// first, as a count update without events.)
		for i := 0; ; i++ {
			r = slide(t, ts, bob, r.Pos, 200, body)
			if len(r.Rooms) == 0 {
				break
			}
			if i == 3 || len(r.Rooms[string(rooms[0])].Timeline) != 0 {
				t.Fatalf("an idle poll returned rooms: %v", r.Rooms)
			}
		}
		// A long-poll wakes for a new event.
		done := make(chan ssResp, 1)
		go func() { done <- slide(t, ts, bob, r.Pos, 20000, body) }()
		waitForWaiter(t, ts.Server, string(rooms[1]))
		sent3, err := alice.SendText(ctx, rooms[1], "wake")
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("long-poll did not wake")
		}
		if tl := r.Rooms[string(rooms[1])].Timeline; len(tl) != 1 || tl[0].EventID != string(sent3.EventID) {
			t.Fatalf("woken response: %v", r.Rooms)
		}
		// Unknown connection or position: M_UNKNOWN_POS.
		other := map[string]any{"conn_id": "never-started", "lists": body["lists"]}
		wantStatus(t, slideRaw(t, ts, bob, r.Pos, 0, other), http.StatusBadRequest, "M_UNKNOWN_POS")
		wantStatus(t, slideRaw(t, ts, bob, "garbage", 0, body), http.StatusBadRequest, "M_UNKNOWN_POS")
		wantStatus(t, slideRaw(t, ts, bob, "", 0, map[string]any{"lists": map[string]any{"x": list([][2]int{{3, 1}}, 1, nil, nil)}}), http.StatusBadRequest, "M_INVALID_PARAM")
	})
}

func TestSlidingSyncFilters(t *testing.T) {
	ts := newTestServer(t, storagetest.Backend{Name: "sqlite"})
	ctx := testCtx(t)
	alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
	mk := func(req *mautrix.ReqCreateRoom) id.RoomID {
		r, err := alice.CreateRoom(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return r.RoomID
	}
	plain := mk(&mautrix.ReqCreateRoom{Name: "plain"})
	enc := mk(&mautrix.ReqCreateRoom{Name: "enc", InitialState: []*event.Event{{Type: event.StateEncryption, StateKey: new(string),
		Content: event.Content{Raw: map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}}})
	space := mk(&mautrix.ReqCreateRoom{Name: "space", CreationContent: map[string]any{"type": "m.space"}})
	dm := mk(&mautrix.ReqCreateRoom{Name: "dm"})
	if err := alice.SetAccountData(ctx, "m.direct", map[string]any{string(bob.UserID): []string{string(dm)}}); err != nil {
		t.Fatal(err)
	}
	if err := alice.SetRoomAccountData(ctx, plain, "m.tag", map[string]any{"tags": map[string]any{"m.favourite": map[string]any{}}}); err != nil {
		t.Fatal(err)
	}
	inv, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "invite", Invite: []id.UserID{alice.UserID}, IsDirect: true})
	if err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	lists := map[string]any{
		"dm":        list([][2]int{{0, 9}}, 0, nil, map[string]any{"is_dm": yes}),
		"encrypted": list([][2]int{{0, 9}}, 0, nil, map[string]any{"is_encrypted": yes}),
		"invites":   list([][2]int{{0, 9}}, 0, nil, map[string]any{"is_invite": yes}),
		"spaces":    list([][2]int{{0, 9}}, 0, nil, map[string]any{"room_types": []any{"m.space"}}),
		"rooms":     list([][2]int{{0, 9}}, 0, nil, map[string]any{"not_room_types": []any{"m.space"}, "is_invite": no}),
		"favs":      list([][2]int{{0, 9}}, 0, nil, map[string]any{"tags": []string{"m.favourite"}}),
	}
	want := map[string]int{"dm": 2, "encrypted": 1, "invites": 1, "spaces": 1, "rooms": 3, "favs": 1}
	r := slide(t, ts, alice, "", 0, map[string]any{"lists": lists})
	for name, n := range want {
		if r.Lists[name].Count != n {
			t.Errorf("list %s: count %d, want %d", name, r.Lists[name].Count, n)
		}
	}
	ir := r.Rooms[string(inv.RoomID)]
	if ir.Membership != "invite" || len(ir.InviteState) == 0 || ir.Name != "invite" || !ir.IsDM {
		t.Fatalf("invite: %+v", ir)
	}
	if !r.Rooms[string(dm)].IsDM || r.Rooms[string(plain)].IsDM {
		t.Fatal("is_dm flags wrong")
	}
	_ = space
	_ = enc
}

func TestSlidingSyncRequiredState(t *testing.T) {
	ts := newTestServer(t, storagetest.Backend{Name: "sqlite"})
	ctx := testCtx(t)
	alice, bob, carol := ts.user(t, "alice"), ts.user(t, "bob"), ts.user(t, "carol")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "state", Invite: []id.UserID{bob.UserID, carol.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*mautrix.Client{bob, carol} {
		if _, err := c.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bob.SendText(ctx, room.RoomID, "from bob"); err != nil {
		t.Fatal(err)
	}
	rs := [][2]string{{"m.room.create", ""}, {"m.room.name", ""}, {"m.room.member", "$LAZY"}, {"m.room.member", "$ME"}}
	body := map[string]any{"lists": map[string]any{"l": list([][2]int{{0, 0}}, 1, rs, nil)}}
	r := slide(t, ts, alice, "", 0, body)
	got := map[string]bool{}
	for _, e := range r.Rooms[string(room.RoomID)].RequiredState {
		k := e.Type
		if e.StateKey != nil {
			k += "|" + *e.StateKey
		}
		got[k] = true
	}
	for _, k := range []string{"m.room.create|", "m.room.name|", "m.room.member|" + string(bob.UserID), "m.room.member|" + string(alice.UserID)} {
		if !got[k] {
			t.Errorf("required_state lacks %s: %v", k, got)
		}
	}
	if got["m.room.member|"+string(carol.UserID)] || got["m.room.power_levels|"] || len(got) != 4 {
		t.Errorf("required_state has more than asked: %v", got)
	}
	// A new state event comes as an increment; then a wider
	// required_state sends the room again in full.
	if _, err := alice.SendStateEvent(ctx, room.RoomID, event.StateRoomName, "", map[string]any{"name": "renamed"}); err != nil {
		t.Fatal(err)
	}
	r = slide(t, ts, alice, r.Pos, 10000, body)
	rr := r.Rooms[string(room.RoomID)]
	if rr.Initial || rr.Name != "renamed" || len(rr.RequiredState) != 1 || rr.RequiredState[0].Type != "m.room.name" {
		t.Fatalf("increment: %+v", rr)
	}
	body = map[string]any{"lists": map[string]any{"l": list([][2]int{{0, 0}}, 1, [][2]string{{"*", "*"}}, nil)}}
	r = slide(t, ts, alice, r.Pos, 0, body)
	rr = r.Rooms[string(room.RoomID)]
	if !rr.Initial || len(rr.RequiredState) < 8 {
		t.Fatalf("after widening required_state: initial %v, %d state events", rr.Initial, len(rr.RequiredState))
	}
}

func TestSlidingSyncExtensions(t *testing.T) {
	ts := newTestServer(t, storagetest.Backend{Name: "sqlite"})
	ctx := testCtx(t)
	alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
	room := directRoom(t, alice, bob)
	yes := true
	ext := map[string]any{
		"to_device": map[string]any{"enabled": yes}, "e2ee": map[string]any{"enabled": yes},
		"account_data": map[string]any{"enabled": yes}, "receipts": map[string]any{"enabled": yes}, "typing": map[string]any{"enabled": yes},
	}
	body := map[string]any{"lists": map[string]any{"l": list([][2]int{{0, 9}}, 5, nil, nil)}, "extensions": ext}
	r := slide(t, ts, bob, "", 0, body)
	e := r.Extensions
	if e.ToDevice == nil || e.E2EE == nil || e.AccountData == nil || e.Receipts == nil || e.Typing == nil {
		t.Fatalf("extensions missing: %+v", e)
	}
	hasRules := false
	for _, g := range e.AccountData.Global {
		hasRules = hasRules || g.Type == "m.push_rules"
	}
	if !hasRules || e.E2EE.OTK == nil {
		t.Fatalf("initial account_data / e2ee: %+v %+v", e.AccountData, e.E2EE)
	}
	// To-device, typing, a receipt and account data arrive as increments.
	if _, err := alice.SendToDevice(ctx, event.Type{Type: "m.test", Class: event.ToDeviceEventType}, &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
		bob.UserID: {bob.DeviceID: {Raw: map[string]any{"hello": "bob"}}}}}); err != nil {
		t.Fatal(err)
	}
	msg, err := alice.SendText(ctx, room, "read me")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.SendReceipt(ctx, room, msg.EventID, event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.UserTyping(ctx, room, true, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := bob.SetAccountData(ctx, "org.example.test", map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	ext["to_device"] = map[string]any{"enabled": yes, "since": e.ToDevice.NextBatch}
	var gotTD, gotTyping, gotReceipt, gotAD bool
	pos := r.Pos
	deadline := time.Now().Add(20 * time.Second)
	for !(gotTD && gotTyping && gotReceipt && gotAD) && time.Now().Before(deadline) {
		r = slide(t, ts, bob, pos, 5000, body)
		pos = r.Pos
		e = r.Extensions
		if len(e.ToDevice.Events) > 0 {
			gotTD = bytes.Contains(e.ToDevice.Events[0], []byte(`"hello":"bob"`))
			ext["to_device"] = map[string]any{"enabled": yes, "since": e.ToDevice.NextBatch}
		}
		if tr, ok := e.Typing.Rooms[string(room)]; ok && len(tr.Content.UserIDs) == 1 && tr.Content.UserIDs[0] == string(alice.UserID) {
			gotTyping = true
		}
		if rc, ok := e.Receipts.Rooms[string(room)]; ok && bytes.Contains(rc, []byte(msg.EventID)) {
			gotReceipt = true
		}
		for _, g := range e.AccountData.Global {
			gotAD = gotAD || g.Type == "org.example.test"
		}
	}
	if !(gotTD && gotTyping && gotReceipt && gotAD) {
		t.Fatalf("to_device %v typing %v receipt %v account_data %v", gotTD, gotTyping, gotReceipt, gotAD)
	}
	// The acknowledged to-device message is not sent again.
	r = slide(t, ts, bob, pos, 0, body)
	if len(r.Extensions.ToDevice.Events) != 0 {
		t.Fatalf("to-device delivered twice: %s", r.Extensions.ToDevice.Events)
	}
}

// FuzzParseSlidingSync: any body gives a request or a Matrix error.
func FuzzParseSlidingSync(f *testing.F) {
	f.Add([]byte(`{"lists":{"a":{"ranges":[[0,10]],"timeline_limit":5,"required_state":[["*","*"]],"filters":{"is_dm":true,"room_types":[null,"m.space"]}}},"room_subscriptions":{"!r":{"timeline_limit":1}},"extensions":{"to_device":{"enabled":true,"since":"5"}}}`))
	f.Add([]byte(`{"lists":{"a":{"ranges":[[5,1]]}}}`))
	f.Add([]byte(`{"lists":{"a":{"ranges":[[0]],"timeline_limit":-1}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseSlidingSync(body)
		if err != nil {
			if _, ok := err.(*MatrixError); !ok {
				t.Fatalf("non-Matrix error %T", err)
			}
			return
		}
		for _, l := range req.Lists {
			if l.TimelineLimit < 0 || l.TimelineLimit > ssMaxTimeline || len(l.Ranges) > ssMaxRanges {
				t.Fatalf("accepted %+v", l)
			}
			for _, r := range l.Ranges {
				if r[0] < 0 || r[1] < r[0] {
					t.Fatalf("accepted range %v", r)
				}
			}
		}
	})
}

// BenchmarkSlidingSync measures an initial sliding sync (a list of 20 of
// the user's rooms, Element X's first request) and an incremental one
// with one new message, for users in 1, 100 and 1,000 rooms.
func BenchmarkSlidingSync(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("rooms=%d", n), func(b *testing.B) {
			ts := newTestServer(b, storagetest.Backend{Name: "sqlite"})
			ctx := b.Context()
			alice := ts.user(b, "alice")
			var last id.RoomID
			for i := 0; i < n; i++ {
				r, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: fmt.Sprint("r", i)})
				if err != nil {
					b.Fatal(err)
				}
				last = r.RoomID
			}
			waitPushIdle(b, ts)
			rs := [][2]string{{"m.room.create", ""}, {"m.room.name", ""}, {"m.room.member", "$LAZY"}}
			body := map[string]any{"conn_id": "bench", "lists": map[string]any{"all": list([][2]int{{0, 19}}, 1, rs, nil)}}
			b.Run("initial", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					r := slide(b, ts, alice, "", 0, body)
					if r.Lists["all"].Count != n {
						b.Fatalf("count %d", r.Lists["all"].Count)
					}
				}
			})
			b.Run("incremental", func(b *testing.B) {
				pos := slide(b, ts, alice, "", 0, body).Pos
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					if _, err := alice.SendText(ctx, last, "tick"); err != nil {
						b.Fatal(err)
					}
					waitPushIdle(b, ts)
					b.StartTimer()
					r := slide(b, ts, alice, pos, 10000, body)
					if len(r.Rooms) == 0 {
						b.Fatal("no room in the increment")
					}
					pos = r.Pos
				}
			})
		})
	}
}

// waitPushIdle waits until push rules were evaluated for every event, so
// that a benchmark does not time the background scan.
func waitPushIdle(b *testing.B, ts *testServer) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cur, err1 := ts.db.PushCursor(b.Context())
		max, err2 := ts.db.MaxPos(b.Context())
		if err1 == nil && err2 == nil && cur >= max {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("push scan did not catch up: %d < %d", cur, max)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
