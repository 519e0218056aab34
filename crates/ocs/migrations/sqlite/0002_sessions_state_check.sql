-- The sessions' state check as comparisons joined by OR: SQLite compiles `state IN (…)` in a
-- CHECK into an ephemeral b-tree, opened and closed on every insert and update of a session
-- (each CCR writes one), where three comparisons cost nothing. PostgreSQL keeps `IN`.
CREATE TABLE ocs_sessions_new (
    id                  TEXT   PRIMARY KEY,
    account_id          BIGINT NOT NULL REFERENCES ocs_accounts (id),
    service             TEXT   NOT NULL,
    destination         TEXT,
    state               TEXT   NOT NULL CHECK (state = 'open' OR state = 'closed' OR state = 'timed_out'),
    last_request_number BIGINT NOT NULL,
    last_request_type   TEXT   NOT NULL,
    last_answer         TEXT   NOT NULL,
    tcc_deadline        BIGINT NOT NULL,
    charged             BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO ocs_sessions_new SELECT * FROM ocs_sessions;
DROP TABLE ocs_sessions;
ALTER TABLE ocs_sessions_new RENAME TO ocs_sessions;
CREATE INDEX ocs_sessions_open ON ocs_sessions (tcc_deadline) WHERE state = 'open';
