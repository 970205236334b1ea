package homeserver

import (
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

func TestDevices(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		ts := newTestServer(t, b)
		ctx := testCtx(t)
		alice := ts.user(t, "alice")
		phone := ts.login(t, "alice", "PHONE", "Phone")
		laptop := ts.login(t, "alice", "LAPTOP", "")
		bob := ts.user(t, "bob")
		tok := string(alice.AccessToken)

		list, err := alice.GetDevicesInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		names := map[id.DeviceID]string{}
		for _, d := range list.Devices {
			names[d.DeviceID] = d.DisplayName
		}
		if len(names) != 3 || names["PHONE"] != "Phone" || names[alice.DeviceID] != "" {
			t.Fatalf("devices = %+v", list.Devices)
		}
		if d, err := alice.GetDeviceInfo(ctx, "PHONE"); err != nil || d.DeviceID != "PHONE" || d.DisplayName != "Phone" {
			t.Fatalf("device = %+v, %v", d, err)
		}
		_, err = alice.GetDeviceInfo(ctx, "NOPE")
		assertErrCode(t, err, http.StatusNotFound, "M_NOT_FOUND")
		// Devices are per user: Bob cannot see Alice's.
		_, err = bob.GetDeviceInfo(ctx, "PHONE")
		assertErrCode(t, err, http.StatusNotFound, "M_NOT_FOUND")

		if err := alice.SetDeviceInfo(ctx, "PHONE", &mautrix.ReqDeviceInfo{DisplayName: "Old phone"}); err != nil {
			t.Fatal(err)
		}
		if d, _ := phone.GetDeviceInfo(ctx, "PHONE"); d.DisplayName != "Old phone" {
			t.Fatalf("renamed device = %+v", d)
		}
		assertErrCode(t, alice.SetDeviceInfo(ctx, "NOPE", &mautrix.ReqDeviceInfo{DisplayName: "x"}), http.StatusNotFound, "M_NOT_FOUND")
		wantStatus(t, ts.do(t, http.MethodPut, "/_matrix/client/v3/devices/PHONE", tok, "nope"), http.StatusBadRequest, "M_NOT_JSON")
		wantStatus(t, ts.do(t, http.MethodPut, "/_matrix/client/v3/devices/PHONE", tok, `{"display_name": 3}`), http.StatusBadRequest, "M_BAD_JSON")

		// Deleting needs UIA.
		wantUIA(t, ts.do(t, http.MethodDelete, "/_matrix/client/v3/devices/PHONE", tok, nil), "")
		bad := passwordAuth("alice")
		bad["password"] = "wrong"
		wantUIA(t, ts.do(t, http.MethodDelete, "/_matrix/client/v3/devices/PHONE", tok, map[string]any{"auth": bad}), "M_FORBIDDEN")
		// Bob's password does not delete Alice's devices.
		wantUIA(t, ts.do(t, http.MethodDelete, "/_matrix/client/v3/devices/PHONE", tok, map[string]any{"auth": passwordAuth("bob")}), "M_FORBIDDEN")
		if _, err := phone.Whoami(ctx); err != nil {
			t.Fatalf("device deleted without auth: %v", err)
		}
		if err := alice.DeleteDevice(ctx, "PHONE", &mautrix.ReqDeleteDevice[any]{Auth: passwordAuth("alice")}); err != nil {
			t.Fatal(err)
		}
		_, err = phone.Whoami(ctx)
		assertErrCode(t, err, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")

		wantStatus(t, ts.do(t, http.MethodPost, "/_matrix/client/v3/delete_devices", tok, map[string]any{"auth": passwordAuth("alice")}),
			http.StatusBadRequest, "M_MISSING_PARAM")
		wantUIA(t, ts.do(t, http.MethodPost, "/_matrix/client/v3/delete_devices", tok, map[string]any{"devices": []string{"LAPTOP"}}), "")
		if err := alice.DeleteDevices(ctx, &mautrix.ReqDeleteDevices[any]{Devices: []id.DeviceID{"LAPTOP", "NEVER-EXISTED"}, Auth: passwordAuth("alice")}); err != nil {
			t.Fatal(err)
		}
		_, err = laptop.Whoami(ctx)
		assertErrCode(t, err, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
		if list, _ := alice.GetDevicesInfo(ctx); len(list.Devices) != 1 || list.Devices[0].DeviceID != alice.DeviceID {
			t.Fatalf("devices after deletes = %+v", list.Devices)
		}
	})
}
