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
