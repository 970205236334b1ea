-- The fold key of each alias (NFKC, case-folded: homeserver/aliases_policy.go)
-- under a unique index: two aliases that read the same cannot both exist.
-- Rows made before this migration have none (NULLs do not collide).
ALTER TABLE room_aliases ADD COLUMN fold_key TEXT
;
CREATE UNIQUE INDEX room_aliases_fold_key ON room_aliases (fold_key)
