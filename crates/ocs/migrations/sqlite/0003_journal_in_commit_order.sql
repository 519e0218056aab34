-- The journal in commit order: a rowid table, so a group commit's lines append to the last
-- leaf page instead of landing on one page per session, as a table clustered on the entry key
-- did (the group commit's writer spent a quarter more CPU per CCR on those pages:
-- docs/BENCHMARKS.md, OCS over Gy). Entry keys are no longer unique here: each business
-- event's own table keeps it from being posted twice (sessions for CCRs, `ocs_data_records`,
-- `ocs_partial_cdrs`, `ocs_calls`, and `ocs_recharges` below for recharges).
CREATE TABLE ocs_recharges (
    key TEXT   PRIMARY KEY,
    at  BIGINT NOT NULL
);
INSERT INTO ocs_recharges (key, at)
    SELECT substr(entry_key, 10, length(entry_key) - 11), MIN(at) FROM ocs_postings
    WHERE kind = 'recharge' GROUP BY entry_key;

CREATE TABLE ocs_postings_new (
    entry_key TEXT   NOT NULL,
    line      BIGINT NOT NULL,
    ledger    TEXT   NOT NULL,
    amount    BIGINT NOT NULL CHECK (amount <> 0),
    kind      TEXT   NOT NULL,
    at        BIGINT NOT NULL
);
INSERT INTO ocs_postings_new SELECT * FROM ocs_postings ORDER BY at, entry_key, line;
DROP TABLE ocs_postings;
ALTER TABLE ocs_postings_new RENAME TO ocs_postings;
