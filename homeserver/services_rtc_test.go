package homeserver

import (
	"errors"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestRemoteOpenIDUserInfo: B learns from A, over federation
// /openid/userinfo, whose OpenID token it holds; A's refusal, and a
// token of B's own, are answered as such.
func TestRemoteOpenIDUserInfo(t *testing.T) {
	b := storagetest.Backends(t)[0]
	a, bb := startFedNode(t, b), startFedNode(t, b)
	ctx := testCtx(t)
	alice := a.user(t, "alice")
	tok, err := alice.RequestOpenIDToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := bb.srv.RemoteOpenIDUserInfo(ctx, a.name, tok.AccessToken)
	if err != nil || got != string(alice.UserID) {
		t.Fatalf("remote userinfo: %q %v", got, err)
	}
	if _, err := bb.srv.RemoteOpenIDUserInfo(ctx, a.name, "sbo_forged"); !errors.Is(err, ErrRemoteOpenID) {
		t.Fatalf("forged token: %v", err)
	}
	// A's token presented as B's is B's to check, and B does not know it.
	if _, err := bb.srv.RemoteOpenIDUserInfo(ctx, bb.name, tok.AccessToken); !errors.Is(err, ErrUnknownOpenIDToken) {
		t.Fatalf("token checked against the wrong server: %v", err)
	}
	if _, err := bb.srv.RemoteOpenIDUserInfo(ctx, "not a server name", tok.AccessToken); !errors.Is(err, ErrRemoteOpenID) {
		t.Fatalf("invalid server name: %v", err)
	}

	// InRoomForRTC: joined local users only.
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	carol := a.user(t, "carol")
	if ok, err := a.srv.InRoomForRTC(ctx, string(room.RoomID), string(alice.UserID)); !ok || err != nil {
		t.Fatalf("alice: %v %v", ok, err)
	}
	if ok, err := a.srv.InRoomForRTC(ctx, string(room.RoomID), string(carol.UserID)); ok || err != nil {
		t.Fatalf("carol (not joined): %v %v", ok, err)
	}
	if ok, err := bb.srv.InRoomForRTC(ctx, string(room.RoomID), string(alice.UserID)); ok || err != nil {
		t.Fatalf("a server outside the room: %v %v", ok, err)
	}
}
