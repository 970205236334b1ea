package homeserver

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestFederationHistoryVisibilityServed asks A, as server B, for room
// data with the federation endpoints a server uses (/backfill, /event,
// /get_missing_events, /state_ids): B sees only what its users may see
// (spec: Client-Server API, "History visibility", "Server behaviour").
// With "joined", B's user joined late, so what came before is withheld
// (served redacted, and so is the state at it); with "shared" it is served. After
// B's only user leaves, what follows is withheld under both.
func TestFederationHistoryVisibilityServed(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb := startFedNode(t, b), startFedNode(t, b)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		ctx := testCtx(t)
		for _, setting := range []string{"joined", "shared"} {
			t.Run(setting, func(t *testing.T) {
				created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
				if err != nil {
					t.Fatal(err)
				}
				room := created.RoomID
				if _, err := alice.SendStateEvent(ctx, room, event.StateHistoryVisibility, "", map[string]any{"history_visibility": setting}); err != nil {
					t.Fatal(err)
				}
				if _, err := alice.SendStateEvent(ctx, room, event.StateTopic, "", map[string]any{"topic": "the topic"}); err != nil {
					t.Fatal(err)
				}
				before, err := alice.SendText(ctx, room, "before bob")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := bob.JoinRoom(ctx, string(room), &mautrix.ReqJoinRoom{Via: []string{a.name}}); err != nil {
					t.Fatal(err)
				}
				waitJoined(t, a, room, bob.UserID)
				during, err := alice.SendText(ctx, room, "while bob is in")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := bob.LeaveRoom(ctx, room); err != nil {
					t.Fatal(err)
				}
				testkit.Eventually(t, 20*time.Second, "A sees bob leave", func() bool {
					m, err := a.srv.db.Membership(ctx, string(room), string(bob.UserID))
					return err == nil && m == "leave"
				})
				after, err := alice.SendText(ctx, room, "after bob left")
				if err != nil {
					t.Fatal(err)
				}

				fc, origin, dest := bb.srv.fed.Client(), spec.ServerName(bb.name), spec.ServerName(a.name)
				txn, err := fc.Backfill(ctx, origin, dest, string(room), 50, []string{string(after.EventID)})
				if err != nil {
					t.Fatal(err)
				}
				ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersion("11"))
				bodies := map[id.EventID]string{}
				for _, raw := range txn.PDUs {
					p, err := ver.NewEventFromTrustedJSON(raw, false)
					if err != nil {
						t.Fatal(err)
					}
					var c map[string]any
					_ = json.Unmarshal(p.Content(), &c)
					body, _ := c["body"].(string)
					bodies[id.EventID(p.EventID())] = body
				}
				wantBefore := map[string]string{"joined": "", "shared": "before bob"}[setting]
				for eid, want := range map[id.EventID]string{before.EventID: wantBefore, during.EventID: "while bob is in", after.EventID: ""} {
					got, ok := bodies[eid]
					if !ok {
						t.Fatalf("backfill did not return %s: %d PDUs", eid, len(txn.PDUs))
					}
					if got != want {
						t.Fatalf("backfill gave B %q for %s, want %q", got, eid, want)
					}
				}

				// /event: the same rule, one event.
				one, err := fc.GetEvent(ctx, origin, dest, string(before.EventID))
				if err != nil || len(one.PDUs) != 1 {
					t.Fatalf("/event: %v", err)
				}
				var ev struct {
					Content map[string]any `json:"content"`
				}
				_ = json.Unmarshal(one.PDUs[0], &ev)
				if got, _ := ev.Content["body"].(string); got != wantBefore {
					t.Fatalf("/event gave B %q, want %q", got, wantBefore)
				}

				// /state at an event B may not see comes redacted: the
				// topic's text is withheld, the membership the auth rules
				// read is not. /state_ids (IDs alone) is served.
				st, err := fc.LookupState(ctx, origin, dest, string(room), string(before.EventID), ver.Version())
				if err != nil {
					t.Fatalf("/state: %v", err)
				}
				topic, membership := "", ""
				for _, raw := range st.StateEvents {
					var se struct {
						Type     string         `json:"type"`
						StateKey string         `json:"state_key"`
						Content  map[string]any `json:"content"`
					}
					_ = json.Unmarshal(raw, &se)
					if se.Type == "m.room.topic" {
						topic, _ = se.Content["topic"].(string)
					}
					if se.Type == "m.room.member" && se.StateKey == string(alice.UserID) {
						membership, _ = se.Content["membership"].(string)
					}
				}
				wantTopic := map[string]string{"joined": "", "shared": "the topic"}[setting]
				if topic != wantTopic || membership != "join" {
					t.Fatalf("/state before bob joined (%s): topic %q, alice's membership %q", setting, topic, membership)
				}
				if ids, err := fc.LookupStateIDs(ctx, origin, dest, string(room), string(before.EventID)); err != nil || len(ids.StateEventIDs) == 0 {
					t.Fatalf("/state_ids: %v", err)
				}
			})
		}
	})
}
