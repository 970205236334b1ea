package homeserver

import (
	"encoding/json"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

func TestServiceDeviceToDevice(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		focus, err := ts.EnsureServiceUser(ctx, "switchboard", "SFU", "Switchboard SFU")
		if err != nil {
			t.Fatal(err)
		}
		// Idempotent: a restart finds the user and device in place.
		if again, err := ts.EnsureServiceUser(ctx, "switchboard", "SFU", "Switchboard SFU"); err != nil || again != focus {
			t.Fatalf("second EnsureServiceUser = %q, %v", again, err)
		}
		inbox, stop, err := ts.ListenToDevice(focus, "SFU", 8)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		if _, _, err := ts.ListenToDevice(focus, "SFU", 8); err != ErrServiceBusy {
			t.Fatalf("second listener: %v", err)
		}

		alice := ts.user(t, "alice")
		start, err := alice.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		_, err = alice.SendToDevice(ctx, event.Type{Type: "m.call.invite", Class: event.ToDeviceEventType}, &mautrix.ReqSendToDevice{
			Messages: map[id.UserID]map[id.DeviceID]*event.Content{
				id.UserID(focus): {"SFU": {Raw: map[string]any{"call_id": "c1", "conf_id": "conf"}}},
			}})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-inbox:
			var content map[string]any
			if err := json.Unmarshal(m.Content, &content); err != nil || m.Sender != string(alice.UserID) || m.Type != "m.call.invite" || content["call_id"] != "c1" {
				t.Fatalf("focus got %+v (%v)", m, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("focus got nothing")
		}

		// The focus answers; Alice's /sync delivers it once.
		if err := ts.SendToDevice(ctx, []ToDeviceMessage{{Sender: focus, Type: "m.call.answer",
			Content: json.RawMessage(`{"call_id":"c1"}`), TargetUser: string(alice.UserID), TargetDevice: string(alice.DeviceID)}}); err != nil {
			t.Fatal(err)
		}
		next := syncUntil(t, alice, start.NextBatch, func(r *mautrix.RespSync) bool {
			for _, e := range r.ToDevice.Events {
				if e.Type.Type == "m.call.answer" && e.Sender == id.UserID(focus) && e.Content.Raw["call_id"] == "c1" {
					return true
				}
			}
			return false
		})
		again, err := alice.SyncRequest(ctx, 0, next, "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(again.ToDevice.Events) != 0 {
			t.Fatalf("acknowledged to-device message delivered again: %+v", again.ToDevice.Events)
		}
	})
}
