package homeserver

import (
	"fmt"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestFederationBackfillStateBefore has B serve, in a /backfill answer at
// the start of A's timeline, a message by trent sent after trent was
// banned: its own auth events (trent's join) allow it, the state before
// it (the ban) does not. A rejects it (spec: Server-Server API, "Checks
// performed on receipt of a PDU", step 5) and keeps every genuine
// message, oldest to newest.
func TestFederationBackfillStateBefore(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb, alice, bob, aliceSync, room := newRoomOnB(t, b)
		ctx := testCtx(t)
		trent := bb.user(t, "trent")
		if _, err := bob.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: trent.UserID}); err != nil {
			t.Fatal(err)
		}
		if _, err := trent.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		trentJoin, err := bb.srv.db.CurrentStateEvent(ctx, string(room.RoomID), "m.room.member", string(trent.UserID))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := trent.SendText(ctx, room.RoomID, "old 0"); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.BanUser(ctx, room.RoomID, &mautrix.ReqBanUser{UserID: trent.UserID, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		ban, err := bb.srv.db.CurrentStateEvent(ctx, string(room.RoomID), "m.room.member", string(trent.UserID))
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < 5; i++ {
			if _, err := bob.SendText(ctx, room.RoomID, fmt.Sprintf("old %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		create, err := bb.srv.db.CurrentStateEvent(ctx, string(room.RoomID), "m.room.create", "")
		if err != nil {
			t.Fatal(err)
		}
		pl, err := bb.srv.db.CurrentStateEvent(ctx, string(room.RoomID), "m.room.power_levels", "")
		if err != nil {
			t.Fatal(err)
		}
		// After the ban in the DAG, citing trent's join as its auth.
		forged := buildOn(t, bb, string(room.RoomID), string(trent.UserID), "m.room.message",
			map[string]any{"msgtype": "m.text", "body": "hostile-after-ban"},
			func(p *gomatrixserverlib.ProtoEvent) {
				p.PrevEvents = []string{ban.EventID}
				p.AuthEvents = []string{create.EventID, pl.EventID, trentJoin.EventID}
				p.Depth = ban.Depth + 1
			}, bb.name, bb.key)
		if _, err := bob.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: alice.UserID}); err != nil {
			t.Fatal(err)
		}
		aliceSync.until(func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Invite[room.RoomID]; return ok })
		if _, err := alice.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		bb.tamper.set(func(path string, body []byte) []byte {
			if strings.Contains(path, "/backfill/") {
				return appendPDUs(t, body, "pdus", [][]byte{forged.JSON()})
			}
			return body
		})
		resp, err := alice.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		var olds []string
		for _, ev := range resp.Chunk {
			body, _ := ev.Content.Raw["body"].(string)
			if strings.HasPrefix(body, "hostile-") {
				t.Fatalf("a message refused by the state before it was backfilled: %s", ev.ID)
			}
			if strings.HasPrefix(body, "old ") {
				olds = append(olds, body)
			}
		}
		if want := "old 4,old 3,old 2,old 1,old 0"; strings.Join(olds, ",") != want {
			t.Fatalf("backfilled %v, want %s", olds, want)
		}
		v, err := a.srv.db.EventVerdict(ctx, forged.EventID())
		if err != nil {
			t.Fatalf("no verdict on the forged event: %v", err)
		}
		if !strings.Contains(v.Reason, "state before it") {
			t.Fatalf("forged event's verdict %q, want a refusal by the state before it", v.Reason)
		}
	})
}
