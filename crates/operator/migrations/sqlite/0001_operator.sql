-- An operator node's schema (SQLite dialect; postgres/ holds the same tables in its own dialect).
-- Times are Unix milliseconds (BIGINT); money is integer minor units (BIGINT).

-- Subscriber accounts. `port_key` is the hex of the derived port key K (never the PIN);
-- NULL until a SIM key is provisioned. `status`: 'active' or 'ported_out'.
CREATE TABLE subscribers (
    msisdn             TEXT    PRIMARY KEY,
    port_key           TEXT,
    arrears            BIGINT  NOT NULL DEFAULT 0,
    unbilled_usage     BIGINT  NOT NULL DEFAULT 0,
    contract_remaining BIGINT  NOT NULL DEFAULT 0,
    deposit_held       BIGINT  NOT NULL DEFAULT 0,
    status             TEXT    NOT NULL DEFAULT 'active',
    updated_at         BIGINT  NOT NULL
);

-- Every clearinghouse message this node has accepted, by its outbox id: the replay guard and
-- the durable work queue. A row with processed_at NULL is retried from next_attempt_at on.
CREATE TABLE received_messages (
    id              BIGINT  PRIMARY KEY,
    kind            TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    received_at     BIGINT  NOT NULL,
    processed_at    BIGINT,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    last_error      TEXT
);
CREATE INDEX received_messages_pending ON received_messages(next_attempt_at) WHERE processed_at IS NULL;

-- The node's own record of porting: what it did as donor and recipient, and what it was told.
-- At most one event per clearinghouse message (message_id), so re-processing records nothing twice.
CREATE TABLE port_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  BIGINT  UNIQUE,
    kind        TEXT    NOT NULL,
    order_id    BIGINT,
    msisdn      TEXT    NOT NULL,
    counterpart TEXT,
    detail      TEXT    NOT NULL,
    at          BIGINT  NOT NULL
);
CREATE INDEX port_events_msisdn ON port_events(msisdn);

-- How far the inbox has been read (catch-up after downtime); one row.
CREATE TABLE inbox_cursor (
    id         BIGINT  PRIMARY KEY CHECK (id = 1),
    last_id    BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);
INSERT INTO inbox_cursor (id, last_id, updated_at) VALUES (1, 0, 0);
