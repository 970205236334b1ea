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

// BenchmarkSyncIncremental measures an incremental /sync over HTTP that
// finds one new message in each of 10 rooms (the same since token every
// time, so every request builds the same non-empty response).
func BenchmarkSyncIncremental(b *testing.B) {
	for _, be := range storagetest.Backends(b) {
		b.Run(be.Name, func(b *testing.B) {
			ts := newTestServer(b, be)
			ctx := context.Background()
			alice := ts.user(b, "alice")
			var rooms []*mautrix.RespCreateRoom
			for i := 0; i < 10; i++ {
				room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
				if err != nil {
					b.Fatal(err)
				}
				rooms = append(rooms, room)
			}
			send := func(room *mautrix.RespCreateRoom) {
				if _, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage,
					map[string]any{"msgtype": "m.text", "body": "hi"}); err != nil {
					b.Fatal(err)
				}
			}
			for _, r := range rooms {
				send(r)
			}
			first, err := alice.SyncRequest(ctx, 0, "", "", false, "")
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range rooms {
				send(r)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := alice.SyncRequest(ctx, 0, first.NextBatch, "", false, "")
				if err != nil {
					b.Fatal(err)
				}
				if len(resp.Rooms.Join) != len(rooms) {
					b.Fatalf("%d rooms in the response, want %d", len(resp.Rooms.Join), len(rooms))
				}
			}
		})
	}
}
