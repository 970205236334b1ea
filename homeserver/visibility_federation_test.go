package homeserver

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/matrix-org/gomatrix"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestFederationHistoryVisibilityServed asks A, as server B, for room
// data with the federation endpoints a server uses (/backfill, /event,
// /get_missing_events, /state_ids): B sees only what its users may see
// (spec: Client-Server API, "History visibility", "Server behaviour").
// With "joined", B's user joined late, so what came before is withheld
// (served redacted, /state_ids refused); with "shared" it is served. After
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
				eventually(t, "A sees bob leave", func() bool {
					m, err := a.srv.db.Membership(ctx, string(room), string(bob.UserID))
					return err == nil && m == "leave"
				})
				after, err := alice.SendText(ctx, room, "after bob left")
				if err != nil {
					t.Fatal(err)
				}

				fc, origin, dest := bb.srv.fed.client, bb.srv.fed.origin(), spec.ServerName(a.name)
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

				// /state_ids at an event B may not see is refused.
				_, err = fc.LookupStateIDs(ctx, origin, dest, string(room), string(before.EventID))
				var he gomatrix.HTTPError
				if setting == "joined" {
					if !errors.As(err, &he) || he.Code != 403 {
						t.Fatalf("/state_ids before bob joined a joined-only room: %v, want 403", err)
					}
				} else if err != nil {
					t.Fatalf("/state_ids in a shared room: %v", err)
				}
			})
		}
	})
}
