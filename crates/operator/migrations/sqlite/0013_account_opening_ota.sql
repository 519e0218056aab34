-- Self-service account opening and over-the-air SIM writing (F7).

-- Numbers and IMSIs handed out from the configured pools; the primary key makes a value
-- allocated at most once, whatever the concurrency, and the row commits with what uses it.
CREATE TABLE pool_allocations (
    pool       TEXT   NOT NULL CHECK (pool IN ('msisdn', 'imsi')),
    value      TEXT   NOT NULL,
    allocated_at BIGINT NOT NULL,
    PRIMARY KEY (pool, value)
);
-- How far each pool has been walked: the position of the next candidate in its ranges.
CREATE TABLE pool_cursors (
    pool     TEXT   PRIMARY KEY,
    position BIGINT NOT NULL
);

-- Cards the operator holds the keys of: blank (in stock) or assigned to an account. K_sim and
-- the OTA keys (KIc ciphering, KID checksum) are sealed under the node's key-encryption key,
-- each for its own context. ota_counter is the last counter reserved for a secured packet to
-- the card: it only grows, and is committed before the packet leaves.
CREATE TABLE sim_cards (
    iccid          TEXT   PRIMARY KEY,
    imsi           TEXT   NOT NULL UNIQUE,
    k_sim_sealed   TEXT   NOT NULL,
    kic_sealed     TEXT   NOT NULL,
    kid_sealed     TEXT   NOT NULL,
    -- The OTA algorithm the keys are for: 'aes' (the key's length says which AES), '3des2' or '3des3'.
    algorithm      TEXT   NOT NULL,
    kic_key_index  BIGINT NOT NULL,
    kid_key_index  BIGINT NOT NULL,
    state          TEXT   NOT NULL CHECK (state IN ('blank', 'assigned')),
    account_id     TEXT,
    ota_counter    BIGINT NOT NULL DEFAULT 0,
    -- The product keys last written to the card (sealed), once its proof of receipt came.
    product_keys_sealed TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- Self-service accounts. id is random (128 bits, hex): it is the only thing that lets its
-- holder read the account's progress. request_sha256 tells a repeat of the request (same
-- Idempotency-Key, same body) from another request under a used key.
CREATE TABLE accounts (
    id               TEXT   PRIMARY KEY,
    idempotency_key  TEXT   UNIQUE,
    request_sha256   TEXT   NOT NULL,
    given_name       TEXT   NOT NULL,
    family_name      TEXT   NOT NULL,
    date_of_birth    TEXT   NOT NULL,
    id_document      TEXT   NOT NULL,
    email            TEXT,
    msisdn           TEXT   NOT NULL UNIQUE,
    iccid            TEXT   NOT NULL UNIQUE REFERENCES sim_cards (iccid),
    imsi             TEXT   NOT NULL,
    plan             TEXT   NOT NULL,
    created_at       BIGINT NOT NULL
);

-- OTA jobs: one card to write (account opening, port-in), the attempts made, and the outcome.
-- counter_from..counter are the counters reserved for its packets: a proof of receipt whose
-- counter falls there is this job's. product_keys_sealed: the keys the job writes.
CREATE TABLE ota_jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    iccid           TEXT   NOT NULL REFERENCES sim_cards (iccid),
    msisdn          TEXT   NOT NULL,
    kind            TEXT   NOT NULL CHECK (kind IN ('account_opening', 'port_in')),
    source          TEXT   UNIQUE,
    state           TEXT   NOT NULL CHECK (state IN ('queued', 'sent', 'done', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    counter_from    BIGINT,
    counter         BIGINT,
    spn             TEXT   NOT NULL,
    smsc_address    TEXT   NOT NULL,
    product_keys_sealed TEXT NOT NULL,
    por_status      BIGINT,
    reason          TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX ota_jobs_due ON ota_jobs (next_attempt_at) WHERE state IN ('queued', 'sent');
CREATE INDEX ota_jobs_iccid ON ota_jobs (iccid, id);
