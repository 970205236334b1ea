package homeserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

func TestStrictJSONScanner(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want error // nil: accepted; errAny: any error
	}{
		{"plain", `{"a":"b","c":[1,{"d":null}],"e":true,"f":false}`, nil},
		{"surrogate pair", `{"a":"\ud83d\ude00"}`, nil},
		{"raw emoji", `{"a":"😀é"}`, nil},
		{"same key in two objects", `{"a":{"k":1},"b":{"k":2}}`, nil},
		{"escapes", `{"a":"\"\\\/\b\f\n\r\t\u0041"}`, nil},
		{"duplicate key", `{"body":"a","body":"b"}`, errDuplicateKey},
		{"duplicate key nested", `{"users":{"@a:x":1,"@a:x":100}}`, errDuplicateKey},
		{"duplicate key by escape", `{"k":1,"\u006b":2}`, errDuplicateKey},
		{"lone high surrogate", `{"a":"\ud800"}`, errLoneSurrogate},
		{"lone low surrogate", `{"a":"\udc00"}`, errLoneSurrogate},
		{"high then non-low", `{"a":"\ud800\u0041"}`, errLoneSurrogate},
		{"high then text", `{"a":"\ud800x"}`, errLoneSurrogate},
		{"lone surrogate in key", `{"\ud800":1}`, errLoneSurrogate},
		{"invalid utf-8", "{\"a\":\"\xff\"}", errInvalidUTF8},
		{"encoded surrogate", "{\"a\":\"\xed\xa0\x80\"}", errInvalidUTF8},
		{"overlong", "{\"a\":\"\xc0\xaf\"}", errInvalidUTF8},
		{"float", `{"a":1.5}`, errFloat},
		{"exponent", `{"a":1E2}`, errFloat},
		{"int range", `{"a":9007199254740992}`, errIntRange},
		{"raw control char", "{\"a\":\"\x01\"}", errJSONSyntax},
		{"leading zero", `{"a":01}`, errJSONSyntax},
		{"bad escape", `{"a":"\x"}`, errJSONSyntax},
		{"trailing comma", `{"a":1,}`, errJSONSyntax},
		{"unterminated", `{"a":"b`, errJSONSyntax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkCanonicalJSON([]byte(tc.body))
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// checkClientJSON (every other request body) allows floats but not
	// the rest.
	if err := checkClientJSON([]byte(`{"a":1.5,"b":1e300}`)); err != nil {
		t.Fatalf("client JSON refused floats: %v", err)
	}
	if err := checkClientJSON([]byte(`{"a":1,"a":2}`)); !errors.Is(err, errDuplicateKey) {
		t.Fatalf("client JSON duplicate: %v", err)
	}
}

// FuzzStrictJSON: the scanner never panics, accepts only what
// encoding/json accepts, and anything it accepts reads the same to every
// parser (its canonical form equals that of a parse and re-encode).
func FuzzStrictJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":"\ud83d\ude00"}`, `{"a":1,"a":2}`, `{"a":"\ud800"}`, "{\"a\":\"\xff\"}",
		`{"a":[1,{"b":null}]}`, `{"k":1,"\u006b":2}`, `{"a":-0}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if checkClientJSON(b) == nil && !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if checkCanonicalJSON(b) != nil {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if err := rooms.SameWhenReparsed(b); err != nil {
			t.Fatalf("accepted %q that parsers read differently: %v", b, err)
		}
	})
}

// oddBodies are the hostile fragments spliced into each route's body: each
// must be refused with 400 and the errcode given.
var oddBodies = []struct{ name, frag, errcode string }{
	{"duplicate key", `,"k":"first","k":"second"`, "M_BAD_JSON"},
	{"duplicate key by escape", `,"k":1,"\u006b":2`, "M_BAD_JSON"},
	{"lone high surrogate", `,"k":"\ud800"`, "M_BAD_JSON"},
	{"lone low surrogate", `,"k":"x\udc00"`, "M_BAD_JSON"},
	{"invalid utf-8", ",\"k\":\"\xff\xfe\"", "M_BAD_JSON"},
	{"float", `,"k":1.5`, "M_BAD_JSON"},
	{"exponent", `,"k":1e3`, "M_BAD_JSON"},
	{"int too large", `,"k":9007199254740992`, "M_BAD_JSON"},
	{"int too small", `,"k":-9007199254740992`, "M_BAD_JSON"},
	{"not json", `,"k":`, "M_NOT_JSON"},
}

// TestClientRoutesRefuseNonCanonicalJSON sends every odd body to every
// client route that builds an event and checks each is refused and changes
// nothing; the same body with a good fragment (a surrogate pair) is
// accepted on every route.
func TestClientRoutesRefuseNonCanonicalJSON(t *testing.T) {
	ts := newTestServer(t, storagetest.Backends(t)[0])
	ctx := testCtx(t)
	alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
	ts.user(t, "carol")
	ts.user(t, "erin")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	target, err := alice.SendText(ctx, room.RoomID, "to be redacted")
	if err != nil {
		t.Fatal(err)
	}
	target2, err := alice.SendText(ctx, room.RoomID, "to be redacted via send")
	if err != nil {
		t.Fatal(err)
	}
	r := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room.RoomID))
	txn := 0
	next := func() string { txn++; return fmt.Sprint("t", txn) }
	type route struct {
		name, method string
		path         func() string
		token        string
		body         string // one %s where the fragment goes
	}
	routes := []route{
		{"send", "PUT", func() string { return r + "/send/m.room.message/" + next() }, alice.AccessToken, `{"msgtype":"m.text","body":"x"%s}`},
		{"state", "PUT", func() string { return r + "/state/m.room.topic/" }, alice.AccessToken, `{"topic":"t"%s}`},
		{"power levels", "PUT", func() string { return r + "/state/m.room.power_levels/" }, alice.AccessToken,
			`{"users":{"` + string(alice.UserID) + `":100}%s}`},
		{"redact", "PUT", func() string { return r + "/redact/" + url.PathEscape(string(target.EventID)) + "/" + next() }, alice.AccessToken, `{"reason":"r"%s}`},
		{"send redaction", "PUT", func() string { return r + "/send/m.room.redaction/" + next() }, alice.AccessToken,
			`{"redacts":"` + string(target2.EventID) + `"%s}`},
		{"displayname", "PUT", func() string {
			return "/_matrix/client/v3/profile/" + url.PathEscape(string(alice.UserID)) + "/displayname"
		},
			alice.AccessToken, `{"displayname":"Alice"%s}`},
		{"avatar", "PUT", func() string {
			return "/_matrix/client/v3/profile/" + url.PathEscape(string(alice.UserID)) + "/avatar_url"
		},
			alice.AccessToken, `{"avatar_url":"mxc://x/y"%s}`},
		{"invite", "POST", func() string { return r + "/invite" }, alice.AccessToken, `{"user_id":"@carol:test.local","reason":"r"%s}`},
		{"kick", "POST", func() string { return r + "/kick" }, alice.AccessToken, `{"user_id":"@carol:test.local","reason":"r"%s}`},
		{"ban", "POST", func() string { return r + "/ban" }, alice.AccessToken, `{"user_id":"@erin:test.local","reason":"r"%s}`},
		{"unban", "POST", func() string { return r + "/unban" }, alice.AccessToken, `{"user_id":"@erin:test.local","reason":"r"%s}`},
		{"join", "POST", func() string { return r + "/join" }, alice.AccessToken, `{"reason":"r"%s}`},
		{"join by alias or id", "POST", func() string { return "/_matrix/client/v3/join/" + url.PathEscape(string(room.RoomID)) }, alice.AccessToken, `{"reason":"r"%s}`},
		{"state member", "PUT", func() string { return r + "/state/m.room.member/" + url.PathEscape(string(alice.UserID)) }, alice.AccessToken,
			`{"membership":"join"%s}`},
		{"createRoom initial_state", "POST", func() string { return "/_matrix/client/v3/createRoom" }, alice.AccessToken,
			`{"initial_state":[{"type":"m.room.topic","state_key":"","content":{"topic":"t"%s}}]}`},
		{"createRoom power_level_content_override", "POST", func() string { return "/_matrix/client/v3/createRoom" }, alice.AccessToken,
			`{"power_level_content_override":{"ban":50%s}}`},
		{"createRoom creation_content", "POST", func() string { return "/_matrix/client/v3/createRoom" }, alice.AccessToken,
			`{"creation_content":{"m.federate":true%s}}`},
		{"createRoom top level", "POST", func() string { return "/_matrix/client/v3/createRoom" }, alice.AccessToken, `{"name":"n"%s}`},
		{"leave", "POST", func() string { return r + "/leave" }, bob.AccessToken, `{"reason":"r"%s}`},
	}
	timeline := func() []string {
		evs, err := ts.db.Messages(ctx, string(room.RoomID), math.MaxInt64, true, math.MinInt64, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range evs {
			ids = append(ids, e.EventID)
		}
		return ids
	}
	joined := func() int {
		rooms, err := alice.JoinedRooms(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(rooms.JoinedRooms)
	}
	beforeTL, beforeRooms := timeline(), joined()
	for _, rt := range routes {
		for _, odd := range oddBodies {
			t.Run(rt.name+"/"+odd.name, func(t *testing.T) {
				resp := ts.do(t, rt.method, rt.path(), rt.token, fmt.Sprintf(rt.body, odd.frag))
				wantStatus(t, resp, 400, odd.errcode)
			})
		}
	}
	if after := timeline(); fmt.Sprint(after) != fmt.Sprint(beforeTL) {
		t.Fatalf("refused requests changed the timeline:\nbefore %v\nafter  %v", beforeTL, after)
	}
	if n := joined(); n != beforeRooms {
		t.Fatalf("refused createRoom requests made rooms: %d before, %d after", beforeRooms, n)
	}
	// The same bodies with well-formed extras work on every route.
	for _, rt := range routes {
		t.Run(rt.name+"/good", func(t *testing.T) {
			resp := ts.do(t, rt.method, rt.path(), rt.token, fmt.Sprintf(rt.body, `,"k":"\ud83d\ude00","n":-9007199254740991`))
			wantStatus(t, resp, 200, "")
		})
	}
	// Every event stored in the room reads the same to every parser.
	assertStoredCanonical(t, ts.Server, string(room.RoomID))
}

// assertStoredCanonical checks that each stored event of the room is
// canonical JSON: its canonical form equals its bytes.
func assertStoredCanonical(t *testing.T, s *Server, roomID string) {
	t.Helper()
	evs, err := s.db.Messages(context.Background(), roomID, math.MaxInt64, true, math.MinInt64, 10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		canon, err := gomatrixserverlib.CanonicalJSON(e.JSON)
		if err != nil || !bytes.Equal(canon, e.JSON) {
			t.Fatalf("stored event %s is not canonical JSON (%v):\n%s", e.EventID, err, e.JSON)
		}
		if err := checkCanonicalJSON(e.JSON); err != nil {
			t.Fatalf("stored event %s: %v", e.EventID, err)
		}
	}
}

// TestRedactionViaSendV11: PUT /send/m.room.redaction with content.redacts
// redacts the target in a room version 11 room.
func TestRedactionViaSendV11(t *testing.T) {
	ts := newTestServer(t, storagetest.Backends(t)[0])
	ctx := testCtx(t)
	alice := ts.user(t, "alice")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{RoomVersion: "11"})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := alice.SendText(ctx, room.RoomID, "secret")
	if err != nil {
		t.Fatal(err)
	}
	p := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room.RoomID)) + "/send/m.room.redaction/"
	wantStatus(t, ts.do(t, "PUT", p+"r0", alice.AccessToken, `{"reason":"no target"}`), 400, "M_MISSING_PARAM")
	wantStatus(t, ts.do(t, "PUT", p+"r1", alice.AccessToken, `{"redacts":"$nope"}`), 404, "M_NOT_FOUND")
	resp := ts.do(t, "PUT", p+"r2", alice.AccessToken, map[string]any{"redacts": msg.EventID, "reason": "oops"})
	wantStatus(t, resp, 200, "")
	red, err := ts.db.Event(ctx, resp.Body["event_id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Content struct {
			Redacts string `json:"redacts"`
		} `json:"content"`
	}
	_ = json.Unmarshal(red.JSON, &f)
	if f.Content.Redacts != string(msg.EventID) {
		t.Fatalf("v11 redaction should carry content.redacts: %s", red.JSON)
	}
	ev, err := alice.GetEvent(ctx, room.RoomID, msg.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Content.Raw) != 0 || ev.Unsigned.RedactedBecause == nil {
		t.Fatalf("target not redacted: content %v unsigned %+v", ev.Content.Raw, ev.Unsigned)
	}
}

// TestDuplicateKeysDoNotSplitFederatedRoom is the attack of issue 20 across
// two servers: a duplicate-key message and power levels are refused at the
// client API, later events flow both ways, and both servers end with the
// same timeline and current state.
func TestDuplicateKeysDoNotSplitFederatedRoom(t *testing.T) {
	b := storagetest.Backends(t)[0]
	a, bb := startFedNode(t, b), startFedNode(t, b)
	ctx := testCtx(t)
	alice, bob := a.user(t, "alice"), bb.user(t, "bob")
	aliceSync, bobSync := newFedSyncer(t, alice), newFedSyncer(t, bob)
	room := joinAcross(t, ctx, alice, bob, bobSync)
	aliceTS := &testServer{Server: a.srv, URL: a.URL}
	r := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room))
	wantStatus(t, aliceTS.do(t, "PUT", r+"/send/m.room.message/dup1", alice.AccessToken,
		`{"msgtype":"m.text","body":"FIRST-a","body":"LAST-b"}`), 400, "M_BAD_JSON")
	wantStatus(t, aliceTS.do(t, "PUT", r+"/state/m.room.power_levels/", alice.AccessToken,
		`{"users":{"`+string(alice.UserID)+`":100},"users":{"`+string(alice.UserID)+`":100,"`+string(bob.UserID)+`":100}}`), 400, "M_BAD_JSON")
	// Normal events afterwards reach the other server, both ways.
	fromBob, err := bob.SendText(ctx, room, "after the refused ones")
	if err != nil {
		t.Fatal(err)
	}
	if got := aliceSync.waitTimeline(room, bob.UserID, "m.room.message", 1); got[0].ID != fromBob.EventID {
		t.Fatalf("alice got %s, want %s", got[0].ID, fromBob.EventID)
	}
	fromAlice, err := alice.SendText(ctx, room, "and one more")
	if err != nil {
		t.Fatal(err)
	}
	if got := bobSync.waitTimeline(room, alice.UserID, "m.room.message", 1); got[0].ID != fromAlice.EventID {
		t.Fatalf("bob got %s, want %s", got[0].ID, fromAlice.EventID)
	}
	// Both timelines, from Bob's join on, and both current states agree.
	since := func(n *fedNode) []id.EventID {
		evs, err := n.srv.db.Messages(ctx, string(room), math.MaxInt64, true, math.MinInt64, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var out []id.EventID
		for i := len(evs) - 1; i >= 0; i-- {
			e := evs[i]
			if e.Type == event.StateMember.Type && e.StateKey != nil && *e.StateKey == string(bob.UserID) && membershipOfEvent(e) == "join" {
				out = out[:0]
			}
			out = append(out, id.EventID(e.EventID))
		}
		return out
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ta, tb := since(a), since(bb)
		sa, sb := stateIDs(t, a, room), stateIDs(t, bb, room)
		if fmt.Sprint(ta) == fmt.Sprint(tb) && sa == sb && len(ta) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("servers differ:\ntimeline A %v\ntimeline B %v\nstate A %s\nstate B %s", ta, tb, sa, sb)
		}
		time.Sleep(20 * time.Millisecond)
	}
	assertStoredCanonical(t, a.srv, string(room))
	assertStoredCanonical(t, bb.srv, string(room))
}

// FuzzClientEventRoutes sends fuzzed bodies to the routes that build events
// from raw content (send, state, redact via send) and to a membership route;
// no answer is a 5xx, and every event stored in the room is canonical JSON
// whose canonical form equals its bytes.
func FuzzClientEventRoutes(f *testing.F) {
	for _, s := range []string{`{"body":"x"}`, `{"body":"a","body":"b"}`, `{"body":"\ud800"}`, "{\"body\":\"\xff\"}",
		`{"n":1.5}`, `{"n":9007199254740992}`, `{"k":1,"\u006b":2}`, `{"body":"\ud83d\ude00"}`, `{"users":{"@a:x":1,"@a:x":2}}`, `[]`, ``} {
		f.Add([]byte(s))
	}
	ts := newTestServer(f, storagetest.Backends(f)[0])
	alice := ts.user(f, "alice")
	room, err := alice.CreateRoom(context.Background(), &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		f.Fatal(err)
	}
	r := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room.RoomID))
	n := 0
	f.Fuzz(func(t *testing.T, body []byte) {
		n++
		for _, rq := range []struct{ method, path string }{
			{"PUT", r + "/send/m.room.message/f" + fmt.Sprint(n)},
			{"PUT", r + "/state/org.example.fuzz/k"},
			{"PUT", r + "/send/m.room.redaction/fr" + fmt.Sprint(n)},
			{"POST", r + "/invite"},
		} {
			resp := ts.do(t, rq.method, rq.path, alice.AccessToken, string(body))
			if resp.Status >= 500 {
				t.Fatalf("%s %s: %d %s", rq.method, rq.path, resp.Status, resp.Raw)
			}
		}
		assertStoredCanonical(t, ts.Server, string(room.RoomID))
	})
}
