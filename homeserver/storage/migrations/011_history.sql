-- History visibility (homeserver/visibility.go) reads a room's membership
-- events by type without scanning its whole timeline.
CREATE INDEX events_room_type ON events (room_id, type, pos)
;
-- Gaps in the middle of a room's timeline: a timeline event whose prev
-- events we do not hold (a rejoin after missed history, an outage longer
-- than get_missing_events reaches). Pagination fills the gap with
-- /backfill; its events, stored as outliers, are listed in gap_events in
-- DAG order (seq 0 the oldest) and served just before the gap's event.
CREATE TABLE timeline_gaps (
	event_id TEXT PRIMARY KEY,
	room_id  TEXT NOT NULL,
	pos      BIGINT NOT NULL,
	prev_ids TEXT NOT NULL,
	filled   INTEGER NOT NULL DEFAULT 0
)
;
CREATE INDEX timeline_gaps_room ON timeline_gaps (room_id, pos)
;
CREATE TABLE gap_events (
	gap_id   TEXT NOT NULL,
	seq      INTEGER NOT NULL,
	event_id TEXT NOT NULL,
	PRIMARY KEY (gap_id, seq)
)
;
