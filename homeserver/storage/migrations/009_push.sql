-- Pushers (spec: Client-Server API, "Push Notifications", "POST
-- /pushers/set"): where a user's devices want notifications sent. A pusher
-- is unique per user by (app_id, pushkey). device_id is the device whose
-- access token created it, so that logging that device out removes it.
-- last_pos is the highest notification position already handed to the
-- gateway (or dropped after a rejection): the notifications table is each
-- pusher's durable queue.
CREATE TABLE pushers (
	user_id             TEXT NOT NULL,
	device_id           TEXT NOT NULL,
	app_id              TEXT NOT NULL,
	pushkey             TEXT NOT NULL,
	kind                TEXT NOT NULL,
	app_display_name    TEXT NOT NULL,
	device_display_name TEXT NOT NULL,
	profile_tag         TEXT NOT NULL DEFAULT '',
	lang                TEXT NOT NULL,
	data                TEXT NOT NULL,
	created_ts          BIGINT NOT NULL,
	last_pos            BIGINT NOT NULL,
	PRIMARY KEY (user_id, app_id, pushkey)
)
;
CREATE INDEX pushers_key ON pushers (app_id, pushkey)
;
-- Notifications: an event whose push rules said "notify" for a user (spec:
-- "GET /notifications"), at the event's stream position. Unread counts are
-- the notifications after the user's read receipt in the room.
CREATE TABLE notifications (
	user_id   TEXT NOT NULL,
	pos       BIGINT NOT NULL,
	room_id   TEXT NOT NULL,
	event_id  TEXT NOT NULL,
	ts        BIGINT NOT NULL,
	actions   TEXT NOT NULL,
	highlight INTEGER NOT NULL,
	PRIMARY KEY (user_id, pos)
)
;
CREATE INDEX notifications_room ON notifications (user_id, room_id, pos)
