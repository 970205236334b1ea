package storage

import (
	"errors"
	"reflect"
	"testing"
)

func TestServerKeysRoundTrip(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *DB) {
		ctx := accountsCtx(t)
		if _, err := db.ServerKey(ctx, "b.test", "ed25519:a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown key: err = %v, want ErrNotFound", err)
		}
		if _, err := db.ServerKeyResponseFor(ctx, "b.test"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown response: err = %v, want ErrNotFound", err)
		}
		current := ServerKey{ServerName: "b.test", KeyID: "ed25519:a", PublicKey: []byte{0, 1, 2, 0xff}, ValidUntilTS: 2000, FetchedTS: 1000}
		old := ServerKey{ServerName: "b.test", KeyID: "ed25519:old", PublicKey: []byte{9, 9}, ExpiredTS: 500, FetchedTS: 1000}
		other := ServerKey{ServerName: "c.test", KeyID: "ed25519:a", PublicKey: []byte{7}, ValidUntilTS: 3000, FetchedTS: 1000}
		if err := db.StoreServerKeys(ctx, []ServerKey{current, old, other}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []ServerKey{current, old, other} {
			got, err := db.ServerKey(ctx, want.ServerName, want.KeyID)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("ServerKey(%s, %s) = %+v, %v; want %+v", want.ServerName, want.KeyID, got, err, want)
			}
		}
		// A later fetch replaces the row: the key was rotated out.
		rotated := current
		rotated.ValidUntilTS, rotated.ExpiredTS, rotated.FetchedTS = 0, 1500, 1600
		if err := db.StoreServerKeys(ctx, []ServerKey{rotated}); err != nil {
			t.Fatal(err)
		}
		if got, err := db.ServerKey(ctx, "b.test", "ed25519:a"); err != nil || !reflect.DeepEqual(got, rotated) {
			t.Fatalf("after rotation: %+v, %v; want %+v", got, err, rotated)
		}
		if got, _ := db.ServerKey(ctx, "c.test", "ed25519:a"); !reflect.DeepEqual(got, other) {
			t.Fatalf("another server's key changed: %+v", got)
		}

		doc := ServerKeyResponse{ServerName: "b.test", JSON: []byte(`{"server_name":"b.test","valid_until_ts":2000}`), ValidUntilTS: 2000, FetchedTS: 1000}
		if err := db.StoreServerKeyResponse(ctx, doc); err != nil {
			t.Fatal(err)
		}
		if got, err := db.ServerKeyResponseFor(ctx, "b.test"); err != nil || !reflect.DeepEqual(got, doc) {
			t.Fatalf("response = %+v, %v; want %+v", got, err, doc)
		}
		doc2 := ServerKeyResponse{ServerName: "b.test", JSON: []byte(`{"server_name":"b.test","valid_until_ts":9000}`), ValidUntilTS: 9000, FetchedTS: 5000}
		if err := db.StoreServerKeyResponse(ctx, doc2); err != nil {
			t.Fatal(err)
		}
		if got, err := db.ServerKeyResponseFor(ctx, "b.test"); err != nil || !reflect.DeepEqual(got, doc2) {
			t.Fatalf("replaced response = %+v, %v; want %+v", got, err, doc2)
		}
	})
}
