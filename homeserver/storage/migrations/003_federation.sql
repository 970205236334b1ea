-- Federation: the durable outbound queue, the scan cursor that feeds it,
-- per-destination backoff, and inbound transaction IDs already handled.

-- One row per PDU or EDU waiting for one destination, in send order.
CREATE TABLE federation_queue (
	id          {{serial}},
	destination TEXT NOT NULL,
	-- 'pdu' or 'edu'
	kind        TEXT NOT NULL,
	json        TEXT NOT NULL,
	created_ts  BIGINT NOT NULL
)
;
CREATE INDEX federation_queue_dest ON federation_queue (destination, kind, id)
;
-- The stream position up to which local events were examined and queued.
CREATE TABLE federation_cursor (
	name TEXT PRIMARY KEY,
	pos  BIGINT NOT NULL
)
;
CREATE TABLE federation_destinations (
	destination TEXT PRIMARY KEY,
	failures    INTEGER NOT NULL DEFAULT 0,
	retry_at    BIGINT NOT NULL DEFAULT 0
)
;
CREATE TABLE federation_inbound_txns (
	origin     TEXT NOT NULL,
	txn_id     TEXT NOT NULL,
	response   TEXT NOT NULL,
	created_ts BIGINT NOT NULL,
	PRIMARY KEY (origin, txn_id)
)
