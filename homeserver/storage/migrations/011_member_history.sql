-- History visibility (homeserver/visibility.go) reads a room's membership
-- events by type without scanning its whole timeline.
CREATE INDEX events_room_type ON events (room_id, type, pos)
;
