-- Federated events we refused or soft-failed (spec: Server-Server API,
-- "Rejection" and "Soft failure"). A rejected event is not in the events
-- table; a soft-failed one is, as an outlier, kept for the DAG but never
-- shown to clients nor built upon.
CREATE TABLE event_verdicts (
	event_id    TEXT PRIMARY KEY,
	room_id     TEXT NOT NULL,
	-- 'rejected' or 'soft_failed'
	verdict     TEXT NOT NULL,
	reason      TEXT NOT NULL,
	received_ts BIGINT NOT NULL
)
;
-- Redactions that arrived before their target (spec: a redaction is
-- applied once its target is known), looked up as each event arrives.
CREATE TABLE pending_redactions (
	target_id    TEXT NOT NULL,
	redaction_id TEXT NOT NULL,
	PRIMARY KEY (target_id, redaction_id)
)
