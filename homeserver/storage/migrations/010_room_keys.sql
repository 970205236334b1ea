-- Server-side key backup (spec: Client-Server API, "Server-side key
-- backups"). Versions are numbered per user and never reused; a deleted
-- version keeps its row (deleted = 1) so that its number stays taken.
-- etag counts changes to the version's keys.
CREATE TABLE room_key_versions (
	user_id   TEXT NOT NULL,
	version   BIGINT NOT NULL,
	algorithm TEXT NOT NULL,
	auth_data TEXT NOT NULL,
	etag      BIGINT NOT NULL DEFAULT 0,
	deleted   INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (user_id, version)
)
;
CREATE TABLE room_keys (
	user_id             TEXT NOT NULL,
	version             BIGINT NOT NULL,
	room_id             TEXT NOT NULL,
	session_id          TEXT NOT NULL,
	first_message_index BIGINT NOT NULL,
	forwarded_count     BIGINT NOT NULL,
	is_verified         INTEGER NOT NULL,
	session_data        TEXT NOT NULL,
	PRIMARY KEY (user_id, version, room_id, session_id)
)
