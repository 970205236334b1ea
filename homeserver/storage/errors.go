package storage

import "errors"

var (
	// ErrNoDatabase is returned by Open for an empty DSN.
	ErrNoDatabase = errors.New("storage: no database configured")
	// ErrClusterSQLite is returned by OpenWith for cluster mode on SQLite.
	ErrClusterSQLite = errors.New("storage: several nodes need a PostgreSQL database (postgres://...), not SQLite")
	// ErrNotFound is returned when a row asked for does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrExists is returned when a unique row already exists.
	ErrExists = errors.New("storage: already exists")
	// ErrWrongKeyBackupVersion is returned when keys are written to a key
	// backup version that is not the user's current one.
	ErrWrongKeyBackupVersion = errors.New("storage: not the current key backup version")
)
