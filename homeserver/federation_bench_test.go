package homeserver

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// BenchmarkFederationLatency measures cross-server latency: a user on A
// sends b.N messages at 20 per second, a user on B receives them through
// /sync; it reports p50 and p99 (ms) and the CPU seconds of the process
// (both servers run in it). The figure is -benchtime=1000x.
func BenchmarkFederationLatency(b *testing.B) {
	for _, be := range storagetest.Backends(b) {
		b.Run(be.Name, func(b *testing.B) {
			a, bb := startFedNode(b, be), startFedNode(b, be)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			alice, bob := a.user(b, "alice"), bb.user(b, "bob")
			room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
				b.Fatal(err)
			}
			if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
				b.Fatal(err)
			}
			first, err := bob.SyncRequest(ctx, 0, "", "", false, "")
			if err != nil {
				b.Fatal(err)
			}
			var mu sync.Mutex
			sentAt := map[string]time.Time{}
			var lat []time.Duration
			done := make(chan struct{})
			go func() {
				defer close(done)
				since := first.NextBatch
				for {
					mu.Lock()
					finished := len(lat) >= b.N
					mu.Unlock()
					if finished || ctx.Err() != nil {
						return
					}
					r, err := bob.SyncRequest(ctx, 5000, since, "", false, "")
					if err != nil {
						return
					}
					now := time.Now()
					since = r.NextBatch
					jr, ok := r.Rooms.Join[room.RoomID]
					if !ok {
						continue
					}
					mu.Lock()
					for _, ev := range jr.Timeline.Events {
						body, _ := ev.Content.Raw["body"].(string)
						if t0, ok := sentAt[body]; ok && ev.Sender == alice.UserID {
							lat = append(lat, now.Sub(t0))
							delete(sentAt, body)
						}
					}
					mu.Unlock()
				}
			}()
			cpu0 := cpuSeconds()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				<-tick.C
				body := fmt.Sprintf("lat-%d", i)
				mu.Lock()
				sentAt[body] = time.Now()
				mu.Unlock()
				if _, err := alice.SendText(ctx, room.RoomID, body); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				b.Fatalf("only %d of %d events arrived", len(lat), b.N)
			}
			b.StopTimer()
			cpu := cpuSeconds() - cpu0
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(cpu, "cpu-s")
		})
	}
}

// cpuSeconds is this process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
