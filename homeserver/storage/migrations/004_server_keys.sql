-- Remote servers' signing keys (spec: Server-Server API, "Retrieving
-- server keys"), kept across restarts so that events of a server that is
-- down can still be verified and the notary can still vouch for them.

-- One row per (server, key ID) as last fetched: a current key has
-- expired_ts 0 and a valid_until_ts; an old key (old_verify_keys) has
-- valid_until_ts 0 and the expired_ts its server gave.
CREATE TABLE server_keys (
	server_name    TEXT NOT NULL,
	key_id         TEXT NOT NULL,
	public_key     {{blob}} NOT NULL,
	valid_until_ts BIGINT NOT NULL,
	expired_ts     BIGINT NOT NULL,
	fetched_ts     BIGINT NOT NULL,
	PRIMARY KEY (server_name, key_id)
)
;
-- Each server's last self-signed key document, served again (counter-signed)
-- by the notary endpoints /_matrix/key/v2/query.
CREATE TABLE server_key_responses (
	server_name    TEXT PRIMARY KEY,
	response       TEXT NOT NULL,
	valid_until_ts BIGINT NOT NULL,
	fetched_ts     BIGINT NOT NULL
)
