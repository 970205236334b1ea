package storage

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// forEachDB runs fn on a fresh, migrated database of every backend.
func forEachDB(t *testing.T, fn func(t *testing.T, db *DB)) {
	for _, b := range storagetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			db, err := Open(ctx, b.Open(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			fn(t, db)
		})
	}
}

func accountsCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustDevice(t *testing.T, db *DB, userID, deviceID string) {
	t.Helper()
	ctx := accountsCtx(t)
	if err := db.CreateUser(ctx, User{UserID: userID, PasswordHash: "x"}, "name", 1); err != nil && !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	if err := db.CreateDevice(ctx, Device{UserID: userID, DeviceID: deviceID, DisplayName: "dev " + deviceID}, userID+deviceID, 1); err != nil {
		t.Fatal(err)
	}
}

func TestOneTimeKeysClaimAndFallback(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *DB) {
		ctx := accountsCtx(t)
		const u, d = "@a:test", "DEV"
		mustDevice(t, db, u, d)
		before, _ := db.MaxPos(ctx)
		counts, err := db.UploadKeys(ctx, u, d, KeyUpload{
			DeviceKeys: []byte(`{"user_id":"@a:test","device_id":"DEV","keys":{"ed25519:DEV":"x"}}`),
			OneTimeKeys: map[string][]byte{
				"signed_curve25519:AAA": []byte(`{"key":"k1"}`),
				"signed_curve25519:AAB": []byte(`{"key":"k2"}`),
				"curve25519:X":          []byte(`"plain"`),
			},
			FallbackKeys: map[string][]byte{"signed_curve25519:FB": []byte(`{"key":"fb","fallback":true}`)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"signed_curve25519": 2, "curve25519": 1}; !reflect.DeepEqual(counts, want) {
			t.Fatalf("counts = %v, want %v", counts, want)
		}
		changed, err := db.DeviceListChangesBetween(ctx, before, 1<<60)
		if err != nil || !reflect.DeepEqual(changed, []string{u}) {
			t.Fatalf("device list changes = %v, %v", changed, err)
		}
		// The same device keys again record no change.
		mid, _ := db.MaxPos(ctx)
		if _, err := db.UploadKeys(ctx, u, d, KeyUpload{DeviceKeys: []byte(`{"device_id":"DEV","user_id":"@a:test","keys":{"ed25519:DEV":"x"}}`)}); err != nil {
			t.Fatal(err)
		}
		if after, _ := db.MaxPos(ctx); after != mid {
			t.Fatalf("identical device keys allocated position %d > %d", after, mid)
		}
		// Re-uploading a key ID with other content conflicts; the same content is fine.
		_, err = db.UploadKeys(ctx, u, d, KeyUpload{OneTimeKeys: map[string][]byte{"signed_curve25519:AAA": []byte(`{"key":"other"}`)}})
		if !errors.Is(err, ErrKeyConflict) {
			t.Fatalf("conflicting OTK: err = %v", err)
		}
		if _, err = db.UploadKeys(ctx, u, d, KeyUpload{OneTimeKeys: map[string][]byte{"signed_curve25519:AAA": []byte(`{"key": "k1"}`)}}); err != nil {
			t.Fatalf("identical OTK: %v", err)
		}
		if types, err := db.UnusedFallbackKeyTypes(ctx, u, d); err != nil || !reflect.DeepEqual(types, []string{"signed_curve25519"}) {
			t.Fatalf("unused fallback = %v, %v", types, err)
		}

		claim := []KeyClaim{{UserID: u, DeviceID: d, Algorithm: "signed_curve25519"}}
		var got []string
		for i := 0; i < 4; i++ {
			keys, err := db.ClaimKeys(ctx, claim)
			if err != nil || len(keys) != 1 {
				t.Fatalf("claim %d = %v, %v", i, keys, err)
			}
			got = append(got, keys[0].KeyID)
			if wantFB := i >= 2; keys[0].Fallback != wantFB {
				t.Fatalf("claim %d fallback = %v", i, keys[0].Fallback)
			}
		}
		if want := []string{"signed_curve25519:AAA", "signed_curve25519:AAB", "signed_curve25519:FB", "signed_curve25519:FB"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("claimed %v, want %v", got, want)
		}
		if types, _ := db.UnusedFallbackKeyTypes(ctx, u, d); len(types) != 0 {
			t.Fatalf("fallback still unused after claim: %v", types)
		}
		if counts, _ := db.OneTimeKeyCounts(ctx, u, d); !reflect.DeepEqual(counts, map[string]int{"curve25519": 1}) {
			t.Fatalf("counts after claims = %v", counts)
		}
		// A new fallback key is unused again; an unknown device yields nothing.
		if _, err := db.UploadKeys(ctx, u, d, KeyUpload{FallbackKeys: map[string][]byte{"signed_curve25519:FB2": []byte(`{"key":"fb2"}`)}}); err != nil {
			t.Fatal(err)
		}
		if types, _ := db.UnusedFallbackKeyTypes(ctx, u, d); len(types) != 1 {
			t.Fatalf("new fallback not unused: %v", types)
		}
		if keys, err := db.ClaimKeys(ctx, []KeyClaim{{UserID: u, DeviceID: "NOPE", Algorithm: "signed_curve25519"}}); err != nil || len(keys) != 0 {
			t.Fatalf("claim from unknown device = %v, %v", keys, err)
		}
		// Deleting the device deletes its keys.
		if err := db.DeleteDevices(ctx, u, []string{d}); err != nil {
			t.Fatal(err)
		}
		if keys, _ := db.QueryDeviceKeys(ctx, u, nil); len(keys) != 0 {
			t.Fatalf("keys of deleted device: %v", keys)
		}
	})
}

func TestCrossSigningAndSignatures(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *DB) {
		ctx := accountsCtx(t)
		const u = "@a:test"
		mustDevice(t, db, u, "DEV")
		if _, err := db.UploadKeys(ctx, u, "DEV", KeyUpload{DeviceKeys: []byte(`{"user_id":"@a:test","device_id":"DEV","keys":{"ed25519:DEV":"devkey"},"signatures":{"@a:test":{"ed25519:DEV":"self"}}}`)}); err != nil {
			t.Fatal(err)
		}
		master := []byte(`{"user_id":"@a:test","usage":["master"],"keys":{"ed25519:MPUB":"MPUB"}}`)
		if err := db.PutCrossSigningKeys(ctx, u, map[string][]byte{CrossSigningMaster: master}); err != nil {
			t.Fatal(err)
		}
		keys, err := db.CrossSigningKeys(ctx, u)
		if err != nil || !sameJSON(keys[CrossSigningMaster], master) || len(keys) != 1 {
			t.Fatalf("cross-signing keys = %s, %v", keys, err)
		}
		// A signature on the device and one on the master key.
		if err := db.AddSignatures(ctx, u, "DEV", map[string]map[string]string{u: {"ed25519:SSK": "sig1"}}); err != nil {
			t.Fatal(err)
		}
		if err := db.AddSignatures(ctx, u, "MPUB", map[string]map[string]string{u: {"ed25519:DEV": "sig2"}}); err != nil {
			t.Fatal(err)
		}
		if err := db.AddSignatures(ctx, u, "UNKNOWN", map[string]map[string]string{u: {"ed25519:DEV": "sig3"}}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown target: %v", err)
		}
		dk, _ := db.QueryDeviceKeys(ctx, u, []string{"DEV"})
		if len(dk) != 1 || !sameJSON(dk[0].Keys, []byte(`{"user_id":"@a:test","device_id":"DEV","keys":{"ed25519:DEV":"devkey"},"signatures":{"@a:test":{"ed25519:DEV":"self","ed25519:SSK":"sig1"}}}`)) {
			t.Fatalf("device keys after signature = %+v", dk)
		}
		if dk[0].DisplayName != "dev DEV" {
			t.Fatalf("display name = %q", dk[0].DisplayName)
		}
		keys, _ = db.CrossSigningKeys(ctx, u)
		if !sameJSON(keys[CrossSigningMaster], []byte(`{"user_id":"@a:test","usage":["master"],"keys":{"ed25519:MPUB":"MPUB"},"signatures":{"@a:test":{"ed25519:DEV":"sig2"}}}`)) {
			t.Fatalf("master after signature = %s", keys[CrossSigningMaster])
		}
	})
}

func TestTokensNoncesFilters(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *DB) {
		ctx := accountsCtx(t)
		mustDevice(t, db, "@a:test", "DEV")
		if err := db.CreateOpenIDToken(ctx, "h1", "@a:test", 2000, 1000); err != nil {
			t.Fatal(err)
		}
		if u, err := db.OpenIDToken(ctx, "h1", 1999); err != nil || u != "@a:test" {
			t.Fatalf("openid = %q, %v", u, err)
		}
		if _, err := db.OpenIDToken(ctx, "h1", 2000); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired openid: %v", err)
		}

		if err := db.CreateRegistrationNonce(ctx, "n1", 1000, 0, 100); err != nil {
			t.Fatal(err)
		}
		if err := db.ConsumeRegistrationNonce(ctx, "n1", 1001); !errors.Is(err, ErrNotFound) {
			t.Fatalf("stale nonce: %v", err)
		}
		if err := db.CreateRegistrationNonce(ctx, "n2", 1000, 0, 100); err != nil {
			t.Fatal(err)
		}
		if err := db.ConsumeRegistrationNonce(ctx, "n2", 1000); err != nil {
			t.Fatalf("fresh nonce: %v", err)
		}
		if err := db.ConsumeRegistrationNonce(ctx, "n2", 1000); !errors.Is(err, ErrNotFound) {
			t.Fatalf("reused nonce: %v", err)
		}

		id, err := db.CreateFilter(ctx, "@a:test", []byte(`{"room":{}}`))
		if err != nil {
			t.Fatal(err)
		}
		if f, err := db.Filter(ctx, "@a:test", id); err != nil || string(f) != `{"room":{}}` {
			t.Fatalf("filter = %s, %v", f, err)
		}
		for _, bad := range [][2]string{{"@b:test", id}, {"@a:test", "x"}, {"@a:test", "-1"}, {"@a:test", "99999"}} {
			if _, err := db.Filter(ctx, bad[0], bad[1]); !errors.Is(err, ErrNotFound) {
				t.Fatalf("filter %v: %v", bad, err)
			}
		}

		if err := db.SetDisplayName(ctx, "@a:test", "Alice"); err != nil {
			t.Fatal(err)
		}
		if err := db.SetAvatarURL(ctx, "@a:test", "mxc://x/y"); err != nil {
			t.Fatal(err)
		}
		if n, a, err := db.DisplayProfile(ctx, "@a:test"); err != nil || n != "Alice" || a != "mxc://x/y" {
			t.Fatalf("profile = %q %q %v", n, a, err)
		}
		if err := db.SetDisplayName(ctx, "@nobody:test", "x"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("profile of unknown user: %v", err)
		}

		if err := db.SetDeviceDisplayName(ctx, "@a:test", "DEV", "Phone"); err != nil {
			t.Fatal(err)
		}
		if d, err := db.DeviceByID(ctx, "@a:test", "DEV"); err != nil || d.DisplayName != "Phone" {
			t.Fatalf("device = %+v, %v", d, err)
		}
		if err := db.SetDeviceDisplayName(ctx, "@a:test", "NOPE", "x"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("rename unknown device: %v", err)
		}
		if ds, err := db.Devices(ctx, "@a:test"); err != nil || len(ds) != 1 || ds[0].DeviceID != "DEV" {
			t.Fatalf("devices = %+v, %v", ds, err)
		}

		for i := 0; i < 3; i++ {
			if _, err := db.UpdateAccountData(ctx, "@a:test", "", "m.counter", func(old []byte) ([]byte, error) {
				return append(old, 'x'), nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if c, err := db.GetAccountData(ctx, "@a:test", "", "m.counter"); err != nil || string(c) != "xxx" {
			t.Fatalf("account data = %q, %v", c, err)
		}
	})
}

func TestUpdateAccountDataConcurrent(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *DB) {
		ctx := accountsCtx(t)
		const n = 20
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			go func() {
				_, err := db.UpdateAccountData(ctx, "@a:test", "", "m.counter", func(old []byte) ([]byte, error) {
					return append(old, 'x'), nil
				})
				errs <- err
			}()
		}
		for i := 0; i < n; i++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if c, _ := db.GetAccountData(ctx, "@a:test", "", "m.counter"); len(c) != n {
			t.Fatalf("lost updates: %d of %d", len(c), n)
		}
	})
}
