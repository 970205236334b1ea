package storage

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// benchDB opens a database of backend b with one device holding 100
// signed_curve25519 one-time keys and a fallback key: what /sync reads on
// every response for every device.
func benchDB(b *testing.B, be storagetest.Backend) *DB {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := Open(ctx, be.Open(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if err := db.CreateUser(ctx, User{UserID: "@a:test", PasswordHash: "x"}, "a", 1); err != nil {
		b.Fatal(err)
	}
	if err := db.CreateDevice(ctx, Device{UserID: "@a:test", DeviceID: "DEV"}, "tok", 1); err != nil {
		b.Fatal(err)
	}
	up := KeyUpload{OneTimeKeys: map[string][]byte{}, FallbackKeys: map[string][]byte{"signed_curve25519:FB": []byte(`{"key":"fb"}`)}}
	for i := 0; i < 100; i++ {
		up.OneTimeKeys[fmt.Sprintf("signed_curve25519:K%03d", i)] = []byte(`{"key":"k"}`)
	}
	if _, err := db.UploadKeys(ctx, "@a:test", "DEV", up); err != nil {
		b.Fatal(err)
	}
	return db
}

// BenchmarkSyncKeyCounts measures the two key queries /sync makes per
// response.
func BenchmarkSyncKeyCounts(b *testing.B) {
	for _, be := range storagetest.Backends(b) {
		b.Run(be.Name, func(b *testing.B) {
			db := benchDB(b, be)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				counts, err := db.OneTimeKeyCounts(ctx, "@a:test", "DEV")
				if err != nil || counts["signed_curve25519"] != 100 {
					b.Fatal(counts, err)
				}
				if types, err := db.UnusedFallbackKeyTypes(ctx, "@a:test", "DEV"); err != nil || len(types) != 1 {
					b.Fatal(types, err)
				}
			}
		})
	}
}

// BenchmarkClaimKey measures one /keys/claim of one key (refilled when
// the device runs out, outside the timer).
func BenchmarkClaimKey(b *testing.B) {
	for _, be := range storagetest.Backends(b) {
		b.Run(be.Name, func(b *testing.B) {
			db := benchDB(b, be)
			ctx := context.Background()
			claim := []KeyClaim{{UserID: "@a:test", DeviceID: "DEV", Algorithm: "signed_curve25519"}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%100 == 99 {
					b.StopTimer()
					up := KeyUpload{OneTimeKeys: map[string][]byte{}}
					for j := 0; j < 100; j++ {
						up.OneTimeKeys[fmt.Sprintf("signed_curve25519:R%d_%03d", i, j)] = []byte(`{"key":"k"}`)
					}
					if _, err := db.UploadKeys(ctx, "@a:test", "DEV", up); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				if keys, err := db.ClaimKeys(ctx, claim); err != nil || len(keys) != 1 {
					b.Fatal(keys, err)
				}
			}
		})
	}
}
