package homeserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/push"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// FuzzParseSetPusher: any body gives a pusher or a Matrix error.
func FuzzParseSetPusher(f *testing.F) {
	f.Add([]byte(`{"kind":"http","app_id":"a","pushkey":"k","app_display_name":"x","device_display_name":"y","lang":"en","data":{"url":"https://p/_matrix/push/v1/notify"}}`))
	f.Add([]byte(`{"kind":null,"app_id":"a","pushkey":"k"}`))
	f.Add([]byte(`{"kind":"http","data":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, del, err := parseSetPusher(body)
		if err != nil {
			if _, ok := err.(*MatrixError); !ok {
				t.Fatalf("non-Matrix error %T", err)
			}
			return
		}
		if !del {
			var pd push.PusherData
			_ = json.Unmarshal(req.Data, &pd)
			if u, err := url.Parse(pd.URL); err != nil || u.Path != "/_matrix/push/v1/notify" {
				t.Fatalf("accepted url %q", pd.URL)
			}
		}
	})
}

// BenchmarkPushCallInviteLatency measures the time from sending an
// m.call.invite (the PUT's start) to its arrival at a push gateway on
// loopback, and reports p50 and p99 in milliseconds.
func BenchmarkPushCallInviteLatency(b *testing.B) {
	ts := newTestServer(b, storagetest.Backend{Name: "sqlite"}, pushOpts)
	gw := newPushGateway(b)
	ctx := context.Background()
	alice, bob := ts.user(b, "alice"), ts.user(b, "bob")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}, IsDirect: true})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"kind": "http", "app_id": "bench", "pushkey": "bob", "app_display_name": "B",
		"device_display_name": "P", "lang": "en", "data": map[string]any{"url": gw.url()}})
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/_matrix/client/v3/pushers/set", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bob.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("set pusher: %v %v", err, resp)
	}
	resp.Body.Close()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		sent, err := alice.SendMessageEvent(ctx, room.RoomID, event.CallInvite, callInvite(fmt.Sprint("bench-", i)))
		if err != nil {
			b.Fatal(err)
		}
		n := gw.waitEvent(b, sent.EventID, "")
		lat = append(lat, n.At.Sub(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[(len(lat)*99)/100]), "p99-ms")
}
