package homeserver

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// BenchmarkMessagesVisibility measures a page of 50 from /messages in a
// joined-only room of 200 messages: for alice, a member since the start
// (every event after her join: no lookup), and for bob, who joined after
// them (each event judged by the state before it; all hidden).
func BenchmarkMessagesVisibility(b *testing.B) {
	be := storagetest.Backends(b)[0]
	ts := newTestServer(b, be)
	ctx := context.Background()
	alice, bob := ts.user(b, "alice"), ts.user(b, "bob")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := alice.SendStateEvent(ctx, room.RoomID, event.StateHistoryVisibility, "", map[string]any{"history_visibility": "joined"}); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := alice.SendText(ctx, room.RoomID, fmt.Sprint("message ", i)); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cli  *mautrix.Client
		want int
	}{{"member since the start", alice, 49}, {"late joiner", bob, 0}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				resp, err := c.cli.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 50)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for _, e := range resp.Chunk {
					if e.Type == event.EventMessage {
						n++
					}
				}
				if n != c.want {
					b.Fatalf("%d messages, want %d", n, c.want)
				}
			}
		})
	}
}
