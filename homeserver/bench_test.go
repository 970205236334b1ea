package homeserver

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// BenchmarkSendMessage measures one client sending messages into a room
// over HTTP (signing, auth check, durable commit).
func BenchmarkSendMessage(b *testing.B) {
	for _, be := range storagetest.Backends(b) {
		b.Run(be.Name, func(b *testing.B) {
			ts := newTestServer(b, be)
			ctx := context.Background()
			alice := ts.user(b, "alice")
			room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage,
					map[string]any{"msgtype": "m.text", "body": "hi"}, mautrix.ReqSendEvent{TransactionID: fmt.Sprint(i)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
