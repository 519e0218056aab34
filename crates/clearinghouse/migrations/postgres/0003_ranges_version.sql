-- Bumped whenever number ranges change. Replicas learn ranges from a snapshot and the change
-- feed carries numbers only, so a replica that sees another version reloads the snapshot.
ALTER TABLE feed_head ADD COLUMN ranges_version BIGINT NOT NULL DEFAULT 0;
