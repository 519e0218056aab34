-- The journal without its key's index: each business event's own table keeps it from being
-- posted twice (sessions for CCRs, `ocs_data_records`, `ocs_partial_cdrs`, `ocs_calls`, and
-- `ocs_recharges` below for recharges), so the lines of a group commit are only appended, as
-- on SQLite (migration 0003 there).
CREATE TABLE ocs_recharges (
    key TEXT   PRIMARY KEY,
    at  BIGINT NOT NULL
);
INSERT INTO ocs_recharges (key, at)
    SELECT substr(entry_key, 10, length(entry_key) - 11), MIN(at) FROM ocs_postings
    WHERE kind = 'recharge' GROUP BY entry_key;
ALTER TABLE ocs_postings DROP CONSTRAINT ocs_postings_pkey;
