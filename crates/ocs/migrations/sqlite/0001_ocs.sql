-- Subscriber balances, one row per account: the row a credit-control request locks and
-- rewrites. `state` holds the account's monetary and unit buckets and its reservations (JSON,
-- `ocs::balance::Account`): one row read and one written per request, where a table per kind
-- cost ten statements (docs/BENCHMARKS.md, OCS). `debt` is credit taken, and its CHECK is the
-- last guard of the credit limit; `balance` (buckets net of debt) and `reserved` are the
-- state's sums, kept beside it for reports.
CREATE TABLE ocs_accounts (
    id           INTEGER PRIMARY KEY,
    msisdn       TEXT   NOT NULL UNIQUE,
    credit_limit BIGINT NOT NULL CHECK (credit_limit >= 0),
    debt         BIGINT NOT NULL DEFAULT 0 CHECK (debt >= 0 AND debt <= credit_limit),
    balance      BIGINT NOT NULL DEFAULT 0,
    reserved     BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    state        TEXT   NOT NULL,
    created_at   BIGINT NOT NULL
);

-- Credit-control sessions, each with its last answer for retransmissions.
CREATE TABLE ocs_sessions (
    id                  TEXT   PRIMARY KEY,
    account_id          BIGINT NOT NULL REFERENCES ocs_accounts (id),
    service             TEXT   NOT NULL,
    destination         TEXT,
    state               TEXT   NOT NULL CHECK (state IN ('open', 'closed', 'timed_out')),
    last_request_number BIGINT NOT NULL,
    last_request_type   TEXT   NOT NULL,
    last_answer         TEXT   NOT NULL,
    tcc_deadline        BIGINT NOT NULL,
    charged             BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
) WITHOUT ROWID;
CREATE INDEX ocs_sessions_open ON ocs_sessions (tcc_deadline) WHERE state = 'open';

-- The double-entry journal: one row per line; the lines of an entry share its key (unique
-- per business event) and sum to zero. Clustered on the key (WITHOUT ROWID): one b-tree
-- written per line instead of two; the per-ledger sums are a check's full scan.
CREATE TABLE ocs_postings (
    entry_key TEXT   NOT NULL,
    line      BIGINT NOT NULL,
    ledger    TEXT   NOT NULL,
    amount    BIGINT NOT NULL CHECK (amount <> 0),
    kind      TEXT   NOT NULL,
    at        BIGINT NOT NULL,
    PRIMARY KEY (entry_key, line)
) WITHOUT ROWID;

-- Tariffs (rating): per service, destination prefix and band of the day.
CREATE TABLE ocs_tariffs (
    id           BIGINT NOT NULL PRIMARY KEY,
    service      TEXT   NOT NULL,
    prefix       TEXT   NOT NULL,
    start_minute BIGINT NOT NULL,
    end_minute   BIGINT NOT NULL,
    price        BIGINT NOT NULL,
    block        BIGINT NOT NULL
);

-- CN102547642B: the numbers and prefixes whose callers are charged online.
CREATE TABLE ocs_online_list (
    digits     TEXT   PRIMARY KEY,
    kind       TEXT   NOT NULL CHECK (kind IN ('number', 'prefix')),
    updated_at BIGINT NOT NULL
);

-- CN101425910A: the configured online-charging capacity (one row) and who is loaded.
CREATE TABLE ocs_capacity (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    total BIGINT NOT NULL CHECK (total >= 0)
);
CREATE TABLE ocs_loaded (
    msisdn    TEXT   PRIMARY KEY,
    weight    BIGINT NOT NULL CHECK (weight > 0),
    loaded_at BIGINT NOT NULL
);

-- CN102083042B: (subscriber or '*', service identifier) → charging mode (JSON); the flat
-- fees charged per day; the data records rated, with their result, charged once.
CREATE TABLE ocs_charging_modes (
    subscriber TEXT   NOT NULL,
    service_id BIGINT NOT NULL,
    mode       TEXT   NOT NULL,
    PRIMARY KEY (subscriber, service_id)
);
CREATE TABLE ocs_flat_fees (
    subscriber TEXT   NOT NULL,
    service_id BIGINT NOT NULL,
    day        BIGINT NOT NULL,
    PRIMARY KEY (subscriber, service_id, day)
);
CREATE TABLE ocs_data_records (
    record_id  TEXT   PRIMARY KEY,
    subscriber TEXT   NOT NULL,
    result     TEXT   NOT NULL,
    at         BIGINT NOT NULL
);

-- CN102083044A: the partial CDRs of calls, each with its decision, and the calls' formal results.
CREATE TABLE ocs_partial_cdrs (
    call_id  TEXT   NOT NULL,
    seq      BIGINT NOT NULL,
    body     TEXT   NOT NULL,
    decision TEXT   NOT NULL,
    charged  BIGINT NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (call_id, seq)
);
CREATE TABLE ocs_calls (
    call_id    TEXT   PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES ocs_accounts (id),
    result     TEXT   NOT NULL,
    at         BIGINT NOT NULL
);
