-- Subscriber balances: the account row is what a credit-control request locks, so every
-- change to one account's buckets and reservations is serialised on it. `debt` is credit
-- taken; the CHECK is the last guard of the credit limit.
CREATE TABLE ocs_accounts (
    id           INTEGER PRIMARY KEY,
    msisdn       TEXT   NOT NULL UNIQUE,
    credit_limit BIGINT NOT NULL CHECK (credit_limit >= 0),
    debt         BIGINT NOT NULL DEFAULT 0 CHECK (debt >= 0 AND debt <= credit_limit),
    created_at   BIGINT NOT NULL
);

-- Monetary buckets; bucket 0 is the account's main bucket, without expiry.
CREATE TABLE ocs_money_buckets (
    account_id BIGINT NOT NULL REFERENCES ocs_accounts (id),
    no         BIGINT NOT NULL,
    remaining  BIGINT NOT NULL CHECK (remaining >= 0),
    expires_at BIGINT,
    PRIMARY KEY (account_id, no)
);

-- Unit buckets (seconds, octets, events), for one rating group or any.
CREATE TABLE ocs_unit_buckets (
    account_id   BIGINT NOT NULL REFERENCES ocs_accounts (id),
    no           BIGINT NOT NULL,
    unit         TEXT   NOT NULL CHECK (unit IN ('time', 'octets', 'service_specific')),
    rating_group BIGINT,
    remaining    BIGINT NOT NULL CHECK (remaining >= 0),
    expires_at   BIGINT,
    PRIMARY KEY (account_id, no)
);

-- What each (session, rating group) holds; `body` is the reservation with its draws (JSON).
CREATE TABLE ocs_reservations (
    session_id   TEXT   NOT NULL,
    rating_group BIGINT NOT NULL,
    account_id   BIGINT NOT NULL REFERENCES ocs_accounts (id),
    money        BIGINT NOT NULL CHECK (money >= 0),
    body         TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (session_id, rating_group)
);
CREATE INDEX ocs_reservations_account ON ocs_reservations (account_id);

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
);
CREATE INDEX ocs_sessions_open ON ocs_sessions (tcc_deadline) WHERE state = 'open';

-- The double-entry journal: one row per line; the lines of an entry share its key (unique
-- per business event) and sum to zero.
CREATE TABLE ocs_postings (
    entry_key TEXT   NOT NULL,
    line      BIGINT NOT NULL,
    ledger    TEXT   NOT NULL,
    amount    BIGINT NOT NULL CHECK (amount <> 0),
    kind      TEXT   NOT NULL,
    at        BIGINT NOT NULL,
    PRIMARY KEY (entry_key, line)
);
CREATE INDEX ocs_postings_ledger ON ocs_postings (ledger);

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
