package homeserver

import (
	"errors"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestFederationPublicRooms: a user of B browses A's room directory
// (/publicRooms?server=A, over federation's /publicRooms), pages through
// it, and joins a room found there; a server name that is not one, or a
// server that does not answer, gets a Matrix error.
func TestFederationPublicRooms(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb := startFedNode(t, b), startFedNode(t, b)
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		for _, name := range []string{"Lobby", "Hallway"} {
			if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: name, Preset: "public_chat", Visibility: "public"}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Private", Preset: "private_chat"}); err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		var lobby *mautrix.PublicRoomInfo
		since := ""
		for page := 0; page < 5; page++ {
			resp, err := bob.PublicRooms(ctx, &mautrix.ReqPublicRooms{Server: a.name, Limit: 1, Since: since})
			if err != nil {
				t.Fatalf("remote directory: %v", err)
			}
			for _, r := range resp.Chunk {
				names[r.Name] = true
				if r.Name == "Lobby" {
					lobby = r
				}
			}
			if resp.NextBatch == "" {
				break
			}
			since = resp.NextBatch
		}
		if len(names) != 2 || !names["Lobby"] || !names["Hallway"] || lobby == nil || lobby.NumJoinedMembers != 1 {
			t.Fatalf("A's directory as B's user sees it: %v (lobby %+v)", names, lobby)
		}
		if _, err := bob.JoinRoom(ctx, string(lobby.RoomID), &mautrix.ReqJoinRoom{Via: []string{a.name}}); err != nil {
			t.Fatalf("joining a room found in A's directory: %v", err)
		}
		for _, tc := range []struct {
			server string
			status int
		}{{"not a server!", http.StatusBadRequest}, {"127.0.0.1:1", http.StatusBadGateway}} {
			_, err := bob.PublicRooms(ctx, &mautrix.ReqPublicRooms{Server: tc.server})
			var herr mautrix.HTTPError
			if !errors.As(err, &herr) || herr.Response == nil || herr.Response.StatusCode != tc.status || herr.RespError == nil || herr.RespError.ErrCode == "" {
				t.Fatalf("server %q: %v, want %d with an errcode", tc.server, err, tc.status)
			}
		}
	})
}
