package rooms_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// keyVerifier checks signatures against known public keys: the narrow
// part of a key ring that CheckReceived uses.
type keyVerifier map[spec.ServerName]ed25519.PublicKey

func (k keyVerifier) VerifyJSONs(_ context.Context, reqs []gomatrixserverlib.VerifyJSONRequest) ([]gomatrixserverlib.VerifyJSONResult, error) {
	out := make([]gomatrixserverlib.VerifyJSONResult, len(reqs))
	for i, r := range reqs {
		pub, ok := k[r.ServerName]
		if !ok {
			out[i].Error = errors.New("unknown server")
			continue
		}
		out[i].Error = gomatrixserverlib.VerifyJSON(string(r.ServerName), "ed25519:b", pub, r.Message)
	}
	return out, nil
}

func TestCheckFormat(t *testing.T) {
	r := newBareRooms(t)
	good := []byte(`{"room_id":"!r:b.test","type":"m.room.message","content":{"body":"x"}}`)
	cases := []struct {
		name string
		raw  []byte
		want error
	}{
		{"good", good, nil},
		{"too large", bytes.Replace(good, []byte(`"x"`), []byte(`"`+strings.Repeat("x", 70000)+`"`), 1), rooms.ErrTooLarge},
		{"duplicate key", bytes.Replace(good, []byte(`"body":"x"`), []byte(`"body":"x","body":"y"`), 1), rooms.ErrBadEvent},
		{"invalid UTF-8", bytes.Replace(good, []byte(`"x"`), []byte("\"\xff\""), 1), rooms.ErrBadEvent},
		{"lone surrogate", bytes.Replace(good, []byte(`"x"`), []byte(`"\ud800"`), 1), rooms.ErrBadEvent},
		{"not JSON", []byte(`{"room_id":`), rooms.ErrBadEvent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := r.CheckFormat(tc.raw)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if id, err := rooms.RoomOf(good); err != nil || id != "!r:b.test" {
		t.Fatalf("RoomOf: %q %v", id, err)
	}
	if _, err := rooms.RoomOf([]byte(`{"type":"x"}`)); !errors.Is(err, rooms.ErrBadEvent) {
		t.Fatalf("RoomOf without room_id: %v", err)
	}
}

func newBareRooms(t testing.TB) *rooms.Rooms {
	_, key, _ := ed25519.GenerateKey(nil)
	r, err := rooms.New(rooms.Config{ServerName: "a.test", KeyID: "ed25519:a", SigningKey: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCheckReceived(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		w.createRoom(roomID)
		keys := keyVerifier{"b.test": w.keyB.Public().(ed25519.PublicKey)}
		room := storage.Room{RoomID: roomID, Version: "11"}
		join := w.remote(roomID, withSender(state(spec.MRoomMember, bob, map[string]any{"membership": "join"}), bob), nil)
		pdu, _, err := w.r.CheckReceived(ctx, join.JSON(), room, rooms.Pushed, keys)
		if err != nil || pdu.EventID() != join.EventID() {
			t.Fatalf("a good event: %v", err)
		}
		// The content changed after signing: the hash no longer matches.
		m := w.remote(roomID, msg(bob, "signed words"), nil)
		tampered := bytes.Replace(m.JSON(), []byte(`signed words`), []byte(`other words`), 1)
		_, _, err = w.r.CheckReceived(ctx, tampered, room, rooms.Pushed, keys)
		if !errors.Is(err, rooms.ErrBadEvent) || !strings.Contains(err.Error(), "hash") || rooms.RefusedID(err) == "" {
			t.Fatalf("pushed with a bad hash: %v (id %q)", err, rooms.RefusedID(err))
		}
		// Pulled, the same event is history served redacted: kept so.
		p, _, err := w.r.CheckReceived(ctx, tampered, room, rooms.Pulled, keys)
		if err != nil || !p.Redacted() {
			t.Fatalf("pulled with a bad hash: %v", err)
		}
		// Signed by another key.
		_, other, _ := ed25519.GenerateKey(nil)
		ver, _ := rooms.Version("11")
		forged, err := ver.NewEventFromTrustedJSON(join.JSON(), false)
		if err != nil {
			t.Fatal(err)
		}
		forged = forged.Sign("b.test", "ed25519:b", other)
		if _, _, err := w.r.CheckReceived(ctx, forged.JSON(), room, rooms.Pushed, keys); !errors.Is(err, rooms.ErrBadEvent) || !strings.Contains(err.Error(), "signature") {
			t.Fatalf("forged signature: %v", err)
		}
		// Without keys (an invite before the invitee signed) it passes.
		if _, _, err := w.r.CheckReceived(ctx, forged.JSON(), room, rooms.Pushed, nil); err != nil {
			t.Fatalf("without keys: %v", err)
		}
		// Of another room than the one it is checked for.
		if _, _, err := w.r.CheckReceived(ctx, join.JSON(), storage.Room{RoomID: "!other:a.test", Version: "11"}, rooms.Pushed, keys); !errors.Is(err, rooms.ErrBadEvent) {
			t.Fatalf("room mismatch: %v", err)
		}
		if _, _, err := w.r.CheckReceived(ctx, join.JSON(), storage.Room{RoomID: roomID, Version: "1"}, rooms.Pushed, keys); !errors.Is(err, rooms.ErrUnsupportedVersion) && !errors.Is(err, rooms.ErrBadEvent) {
			t.Fatalf("old room version: %v", err)
		}
	})
}

// FuzzReceive feeds arbitrary bytes through steps 1–3: nothing panics,
// and what passes has an event ID and the room it claims.
func FuzzReceive(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(nil)
	ver, _ := rooms.Version("11")
	proto := gomatrixserverlib.ProtoEvent{SenderID: "@bob:b.test", RoomID: "!r:b.test", Type: "m.room.message",
		Content: []byte(`{"body":"x","msgtype":"m.text"}`), Depth: 3, PrevEvents: []string{"$p"}, AuthEvents: []string{"$a"}, Version: ver}
	good, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(time.UnixMilli(1), "b.test", "ed25519:b", key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.JSON())
	f.Add(bytes.Replace(good.JSON(), []byte(`"x"`), []byte(`"y"`), 1))
	f.Add([]byte(`{"room_id":"!r:b.test"}`))
	f.Add([]byte(`{"room_id":"!r:b.test","depth":1.5}`))
	f.Add([]byte(`{"room_id":"!r:b.test","a":1,"a":2}`))
	f.Add([]byte(`[]`))
	f.Add([]byte("\xff"))
	r := newBareRooms(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if err := r.CheckFormat(raw); err != nil {
			return
		}
		roomID, err := rooms.RoomOf(raw)
		if err != nil {
			return
		}
		p, _, err := r.CheckReceived(context.Background(), raw, storage.Room{RoomID: roomID, Version: "11"}, rooms.Pulled, nil)
		if err != nil {
			return
		}
		if p.EventID() == "" || p.RoomID().String() != roomID {
			t.Fatalf("accepted %q as %q in %q", raw, p.EventID(), p.RoomID().String())
		}
	})
}
