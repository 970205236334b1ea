// Package storagetest gives tests the databases to run on: always a fresh
// SQLite file, and a fresh PostgreSQL database per test when
// SWITCHBOARD_TEST_POSTGRES holds a URL of a role that may create databases.
package storagetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

// Backend is one database a test runs on.
type Backend struct {
	Name string // "sqlite" or "postgres"
	DSN  string
}

// EnvPostgres names the variable holding the PostgreSQL URL.
const EnvPostgres = "SWITCHBOARD_TEST_POSTGRES"

// Backends returns SQLite, and PostgreSQL when EnvPostgres is set.
func Backends(t testing.TB) []Backend {
	out := []Backend{{Name: "sqlite"}}
	if os.Getenv(EnvPostgres) != "" {
		out = append(out, Backend{Name: "postgres"})
	}
	return out
}

// Open makes the backend's database for this test, dropped at cleanup,
// and returns its DSN.
func (b Backend) Open(t testing.TB) string {
	t.Helper()
	if b.Name == "sqlite" {
		return filepath.Join(t.TempDir(), "switchboard.db")
	}
	return NewPostgresDB(t)
}

// NewPostgresDB creates a fresh PostgreSQL database for this test.
func NewPostgresDB(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvPostgres)
	if base == "" {
		t.Fatalf("%s is not set: run the tests through `make test`, which starts PostgreSQL", EnvPostgres)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgres, err)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "sbtest_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		t.Fatalf("postgres: create database (does the role have CREATEDB?): %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Close()
	})
	u.Path = "/" + name
	return u.String()
}
