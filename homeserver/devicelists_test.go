package homeserver

import (
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

func TestSyncDeviceLists(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		start, err := alice.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		has := func(list []id.UserID, u id.UserID) bool { return slices.Contains(list, u) }
		since := syncUntil(t, alice, start.NextBatch, func(r *mautrix.RespSync) bool { return has(r.DeviceLists.Changed, bob.UserID) })

		// Bob logs in on a second device: his device list changed.
		other, _ := mautrix.NewClient(ts.URL, "", "")
		if _, err := other.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "bob"}, Password: "password"}); err != nil {
			t.Fatal(err)
		}
		since = syncUntil(t, alice, since, func(r *mautrix.RespSync) bool { return has(r.DeviceLists.Changed, bob.UserID) })

		// Bob leaves the only room they shared: he is in left.
		if _, err := bob.LeaveRoom(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		syncUntil(t, alice, since, func(r *mautrix.RespSync) bool { return has(r.DeviceLists.Left, bob.UserID) })
	})
}
