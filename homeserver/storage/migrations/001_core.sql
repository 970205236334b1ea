-- The shared schema: {{serial}} and {{blob}} are rewritten per dialect.
-- Statements are separated by lines holding only ";".

-- One stream orders everything /sync delivers; every row that sync reads
-- carries a pos from here.
CREATE TABLE stream_positions (pos {{serial}})
;
CREATE TABLE users (
	user_id       TEXT PRIMARY KEY,
	password_hash TEXT NOT NULL,
	is_admin      INTEGER NOT NULL DEFAULT 0,
	deactivated   INTEGER NOT NULL DEFAULT 0,
	created_ts    BIGINT NOT NULL
)
;
CREATE TABLE devices (
	user_id      TEXT NOT NULL,
	device_id    TEXT NOT NULL,
	display_name TEXT,
	-- token_hash is the hex SHA-256 of the access token; tokens are never stored.
	token_hash   TEXT NOT NULL UNIQUE,
	created_ts   BIGINT NOT NULL,
	last_seen_ts BIGINT NOT NULL DEFAULT 0,
	last_seen_ip TEXT,
	PRIMARY KEY (user_id, device_id)
)
;
CREATE TABLE profiles (
	user_id     TEXT PRIMARY KEY,
	displayname TEXT,
	avatar_url  TEXT
)
;
CREATE TABLE rooms (
	room_id    TEXT PRIMARY KEY,
	version    TEXT NOT NULL,
	creator    TEXT NOT NULL,
	created_ts BIGINT NOT NULL,
	is_public  INTEGER NOT NULL DEFAULT 0,
	-- The forward extremities of the room's DAG, as a JSON array of event IDs,
	-- and the depth of the deepest one.
	extremities TEXT NOT NULL DEFAULT '[]',
	depth       BIGINT NOT NULL DEFAULT 0,
	current_snapshot BIGINT NOT NULL DEFAULT 0
)
;
-- A state snapshot is a room's whole state at a point of its DAG, as a
-- JSON object {"<type>\u0000<state_key>": "<event_id>"}.
CREATE TABLE state_snapshots (
	id      {{serial}},
	room_id TEXT NOT NULL,
	state   TEXT NOT NULL
)
;
CREATE TABLE events (
	pos             BIGINT PRIMARY KEY,
	event_id        TEXT NOT NULL UNIQUE,
	room_id         TEXT NOT NULL,
	type            TEXT NOT NULL,
	state_key       TEXT,
	sender          TEXT NOT NULL,
	origin_server_ts BIGINT NOT NULL,
	received_ts     BIGINT NOT NULL,
	depth           BIGINT NOT NULL,
	json            TEXT NOT NULL,
	-- State snapshots before and after this event (equal for non-state events).
	snap_before     BIGINT NOT NULL,
	snap_after      BIGINT NOT NULL,
	-- prev_content and friends for state events, as a JSON object merged
	-- into unsigned when served.
	unsigned_extra  TEXT,
	txn_device      TEXT,
	txn_id          TEXT,
	redacted_by     TEXT,
	-- 1 when the event is stored but not part of the room's timeline
	-- (fetched for auth or state only, or soft-failed).
	outlier         INTEGER NOT NULL DEFAULT 0
)
;
CREATE INDEX events_room_pos ON events (room_id, pos)
;
CREATE TABLE current_state (
	room_id    TEXT NOT NULL,
	type       TEXT NOT NULL,
	state_key  TEXT NOT NULL,
	event_id   TEXT NOT NULL,
	membership TEXT,
	pos        BIGINT NOT NULL,
	PRIMARY KEY (room_id, type, state_key)
)
;
CREATE INDEX current_state_member ON current_state (state_key, type, membership)
;
CREATE TABLE txns (
	user_id   TEXT NOT NULL,
	device_id TEXT NOT NULL,
	txn_id    TEXT NOT NULL,
	event_id  TEXT NOT NULL,
	PRIMARY KEY (user_id, device_id, txn_id)
)
;
CREATE TABLE room_aliases (
	alias   TEXT PRIMARY KEY,
	room_id TEXT NOT NULL,
	creator TEXT NOT NULL
)
;
CREATE TABLE forgotten_rooms (
	user_id TEXT NOT NULL,
	room_id TEXT NOT NULL,
	PRIMARY KEY (user_id, room_id)
)
;
-- room_id is '' for global account data.
CREATE TABLE account_data (
	user_id TEXT NOT NULL,
	room_id TEXT NOT NULL,
	type    TEXT NOT NULL,
	content TEXT NOT NULL,
	pos     BIGINT NOT NULL,
	PRIMARY KEY (user_id, room_id, type)
)
;
CREATE INDEX account_data_pos ON account_data (user_id, pos)
;
CREATE TABLE receipts (
	room_id   TEXT NOT NULL,
	user_id   TEXT NOT NULL,
	type      TEXT NOT NULL,
	thread_id TEXT NOT NULL DEFAULT '',
	event_id  TEXT NOT NULL,
	ts        BIGINT NOT NULL,
	pos       BIGINT NOT NULL,
	PRIMARY KEY (room_id, user_id, type, thread_id)
)
;
CREATE INDEX receipts_pos ON receipts (room_id, pos)
;
CREATE TABLE to_device (
	pos       BIGINT PRIMARY KEY,
	user_id   TEXT NOT NULL,
	device_id TEXT NOT NULL,
	sender    TEXT NOT NULL,
	type      TEXT NOT NULL,
	content   TEXT NOT NULL
)
;
CREATE INDEX to_device_target ON to_device (user_id, device_id, pos)
;
CREATE TABLE filters (
	filter_id {{serial}},
	user_id   TEXT NOT NULL,
	filter    TEXT NOT NULL
)
;
CREATE TABLE device_list_changes (
	pos     BIGINT PRIMARY KEY,
	user_id TEXT NOT NULL
)
;
CREATE TABLE device_keys (
	user_id   TEXT NOT NULL,
	device_id TEXT NOT NULL,
	keys      TEXT NOT NULL,
	PRIMARY KEY (user_id, device_id)
)
;
CREATE TABLE one_time_keys (
	user_id   TEXT NOT NULL,
	device_id TEXT NOT NULL,
	key_id    TEXT NOT NULL,
	algorithm TEXT NOT NULL,
	key_json  TEXT NOT NULL,
	PRIMARY KEY (user_id, device_id, key_id)
)
;
CREATE TABLE fallback_keys (
	user_id   TEXT NOT NULL,
	device_id TEXT NOT NULL,
	algorithm TEXT NOT NULL,
	key_id    TEXT NOT NULL,
	key_json  TEXT NOT NULL,
	used      INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (user_id, device_id, algorithm)
)
;
CREATE TABLE cross_signing_keys (
	user_id  TEXT NOT NULL,
	key_type TEXT NOT NULL,
	key_json TEXT NOT NULL,
	PRIMARY KEY (user_id, key_type)
)
;
CREATE TABLE openid_tokens (
	token_hash TEXT PRIMARY KEY,
	user_id    TEXT NOT NULL,
	expires_ts BIGINT NOT NULL
)
;
CREATE TABLE registration_nonces (
	nonce      TEXT PRIMARY KEY,
	created_ts BIGINT NOT NULL
)
