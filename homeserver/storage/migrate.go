package storage

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrate applies every embedded migration newer than the recorded schema
// version, each in its own transaction. Files are named NNN_name.sql and
// written once in the shared dialect with {{serial}} and {{blob}}
// placeholders; statements are separated by lines holding only ";".
func (db *DB) migrate(ctx context.Context) error {
	if db.dialect != postgres {
		return migrateOn(ctx, db.w, db.dialect)
	}
	// Nodes of a cluster may start together: one migrates at a time, on
	// one connection holding a session advisory lock (the others wait and
	// then find nothing left to do).
	conn, err := db.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("storage: migrate: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, lockMigrate); err != nil {
		return fmt.Errorf("storage: migrate: lock: %w", err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, lockMigrate)
	}()
	return migrateOn(ctx, conn, db.dialect)
}

// migrator is what migrateOn needs: a pool or one connection.
type migrator interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

func migrateOn(ctx context.Context, m migrator, d dialect) error {
	if _, err := m.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("storage: migrate: %w", err)
	}
	var current int
	if err := m.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&current); err != nil {
		return fmt.Errorf("storage: migrate: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("storage: migrate: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		n, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("storage: migration %s: bad name", base)
		}
		if n <= current {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return fmt.Errorf("storage: migration %s: %w", base, err)
		}
		tx, err := m.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("storage: migration %s: %w", base, err)
		}
		for _, stmt := range strings.Split(d.ddl.Replace(string(body)), "\n;\n") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				_ = tx.Rollback()
				return fmt.Errorf("storage: migration %s: %w", base, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES ($1)`, n); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("storage: migration %s: %w", base, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("storage: migration %s: %w", base, err)
		}
	}
	return nil
}
