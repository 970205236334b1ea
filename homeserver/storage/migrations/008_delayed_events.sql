-- MSC4140 delayed events: events a client scheduled to be sent later
-- (Element Call's "leave the call if I vanish"). A row lives until the
-- event is sent, cancelled or superseded; send_at is when it is due,
-- running_since + delay_ms, moved on by each restart.
CREATE TABLE delayed_events (
	delay_id      TEXT PRIMARY KEY,
	user_id       TEXT NOT NULL,
	device_id     TEXT NOT NULL,
	room_id       TEXT NOT NULL,
	type          TEXT NOT NULL,
	-- NULL for a message event
	state_key     TEXT,
	content       TEXT NOT NULL,
	delay_ms      BIGINT NOT NULL,
	running_since BIGINT NOT NULL,
	send_at       BIGINT NOT NULL,
	-- MSC4354 sticky duration of the event once sent; 0: not sticky
	sticky_ms     BIGINT NOT NULL,
	-- the client transaction of PUT send (NULL for state): a retried
	-- request gets the same delay_id
	txn_id        TEXT
)
;
CREATE INDEX delayed_events_send_at ON delayed_events (send_at)
;
CREATE INDEX delayed_events_user ON delayed_events (user_id, device_id, txn_id)
;
CREATE INDEX delayed_events_state ON delayed_events (room_id, type, state_key)

;
-- MSC4354 sticky events, while they may still be sticky: /sync sends them
-- in their own section when the timeline does not carry them. Rows whose
-- expires_ts has passed are deleted now and then.
CREATE TABLE sticky_events (
	event_id   TEXT PRIMARY KEY,
	room_id    TEXT NOT NULL,
	pos        BIGINT NOT NULL,
	expires_ts BIGINT NOT NULL
)
;
CREATE INDEX sticky_events_room_pos ON sticky_events (room_id, pos)
;
CREATE INDEX sticky_events_expires ON sticky_events (expires_ts)
