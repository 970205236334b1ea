package storage

import "strings"

// dialect holds the few places where SQLite and PostgreSQL really differ.
// Every other statement is shared text.
type dialect struct {
	name       string
	nextPosSQL string
	maxPosSQL  string
	// ddl rewrites the shared schema's placeholders.
	ddl *strings.Replacer
}

var (
	sqlite = dialect{
		name:       "sqlite",
		nextPosSQL: "INSERT INTO stream_positions DEFAULT VALUES RETURNING pos",
		maxPosSQL:  "SELECT MAX(pos) FROM stream_positions",
		ddl: strings.NewReplacer(
			"{{serial}}", "INTEGER PRIMARY KEY AUTOINCREMENT",
			"{{blob}}", "BLOB",
		),
	}
	postgres = dialect{
		name:       "postgres",
		nextPosSQL: "INSERT INTO stream_positions DEFAULT VALUES RETURNING pos",
		maxPosSQL:  "SELECT MAX(pos) FROM stream_positions",
		ddl: strings.NewReplacer(
			"{{serial}}", "BIGSERIAL PRIMARY KEY",
			"{{blob}}", "BYTEA",
		),
	}
)
