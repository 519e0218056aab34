-- The clearinghouse schema (SQLite dialect; postgres/ holds the same tables in its own dialect).
-- Times are Unix milliseconds (BIGINT); money is integer minor units (BIGINT); flags are 0/1.

CREATE TABLE operators (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    name                 TEXT    NOT NULL UNIQUE,
    routing_number       TEXT    NOT NULL UNIQUE,
    callback_url         TEXT,
    callback_key_version BIGINT  NOT NULL DEFAULT 0,
    created_at           BIGINT  NOT NULL
);

-- API credentials: only the SHA-256 of the secret half is kept.
CREATE TABLE api_keys (
    key_id      TEXT    PRIMARY KEY,
    operator_id BIGINT  NOT NULL REFERENCES operators(id),
    secret_hash TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_operator ON api_keys(operator_id);

CREATE TABLE number_ranges (
    prefix      TEXT    PRIMARY KEY,
    operator_id BIGINT  NOT NULL REFERENCES operators(id)
);

-- Double-entry ledger. `balance` is a cache of SUM(postings.amount), kept in the same
-- transaction as every posting; the sum over all accounts is always zero.
CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    operator_id BIGINT  UNIQUE REFERENCES operators(id),
    balance     BIGINT  NOT NULL DEFAULT 0
);
CREATE TABLE journals (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL,
    order_id        BIGINT,
    created_at      BIGINT  NOT NULL
);
CREATE TABLE postings (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    journal_id BIGINT  NOT NULL REFERENCES journals(id),
    account_id BIGINT  NOT NULL REFERENCES accounts(id),
    amount     BIGINT  NOT NULL
);
CREATE INDEX postings_account ON postings(account_id, id);

CREATE TABLE porting_orders (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    msisdn             TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    recipient_id       BIGINT  NOT NULL REFERENCES operators(id),
    donor_id           BIGINT  REFERENCES operators(id),
    range_holder_id    BIGINT  REFERENCES operators(id),
    state              TEXT    NOT NULL,
    reason             TEXT,
    active             BIGINT  NOT NULL,
    nonce              TEXT    NOT NULL,
    proof              TEXT    NOT NULL,
    expiry             BIGINT  NOT NULL,
    deadline_at        BIGINT,
    arrears            BIGINT,
    unbilled_usage     BIGINT,
    contract_remaining BIGINT,
    deposit_held       BIGINT,
    compensation       BIGINT,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    completed_at       BIGINT
);
CREATE UNIQUE INDEX porting_orders_one_open ON porting_orders(msisdn) WHERE active = 1;
CREATE UNIQUE INDEX porting_orders_nonce ON porting_orders(msisdn, nonce);
CREATE INDEX porting_orders_deadline ON porting_orders(deadline_at) WHERE active = 1;
CREATE INDEX porting_orders_recipient ON porting_orders(recipient_id, id);
CREATE INDEX porting_orders_donor ON porting_orders(donor_id, id);

-- The donor's deposit of the expected proof (F1 step 2), keyed by the terminal's nonce.
CREATE TABLE proof_deposits (
    msisdn     TEXT    NOT NULL,
    nonce      TEXT    NOT NULL,
    donor_id   BIGINT  NOT NULL REFERENCES operators(id),
    proof      TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (msisdn, nonce)
);

-- Failed verifications per number, for the attempt limit.
CREATE TABLE verification_failures (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    msisdn TEXT    NOT NULL,
    at     BIGINT  NOT NULL
);
CREATE INDEX verification_failures_msisdn ON verification_failures(msisdn, at);

-- Numbers served by an operator other than their range holder.
CREATE TABLE ported_numbers (
    msisdn      TEXT    PRIMARY KEY,
    operator_id BIGINT  NOT NULL REFERENCES operators(id),
    order_id    BIGINT,
    ported_at   BIGINT  NOT NULL
);

-- The routing change log F2 publishes. `seq` comes from feed_head in the same transaction,
-- so it is gap-free and in commit order on every backend.
CREATE TABLE routing_changes (
    seq            BIGINT  PRIMARY KEY,
    msisdn         TEXT    NOT NULL,
    operator_id    BIGINT  NOT NULL REFERENCES operators(id),
    routing_number TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    order_id       BIGINT,
    effective_at   BIGINT  NOT NULL
);
CREATE TABLE feed_head (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL
);
INSERT INTO feed_head (id, last_seq) VALUES (1, 0);

-- Durable outbox: every message to an operator, delivered by callback or fetched from the inbox.
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    operator_id     BIGINT  NOT NULL REFERENCES operators(id),
    kind            TEXT    NOT NULL,
    order_id        BIGINT,
    body            TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    delivered_at    BIGINT,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    last_error      TEXT
);
CREATE INDEX messages_due ON messages(next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX messages_inbox ON messages(operator_id, id);

CREATE TABLE violations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    operator_id BIGINT  NOT NULL REFERENCES operators(id),
    order_id    BIGINT  NOT NULL REFERENCES porting_orders(id),
    step        TEXT    NOT NULL,
    deadline_at BIGINT  NOT NULL,
    recorded_at BIGINT  NOT NULL,
    lateness_ms BIGINT  NOT NULL
);
CREATE INDEX violations_operator ON violations(operator_id, id);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         BIGINT  NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    order_id   BIGINT,
    from_state TEXT,
    to_state   TEXT,
    detail     TEXT    NOT NULL
);
CREATE INDEX audit_log_order ON audit_log(order_id, id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- Operator requests already answered, by Idempotency-Key: a retry gets the stored answer.
CREATE TABLE idempotency_keys (
    operator_id  BIGINT  NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    status       BIGINT  NOT NULL,
    response     TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    PRIMARY KEY (operator_id, key)
);
