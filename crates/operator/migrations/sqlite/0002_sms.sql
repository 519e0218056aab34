-- Enterprises allowed to bind to the SMS center over SMPP; passwords only as Argon2id hashes.
CREATE TABLE esme_accounts (
    system_id         TEXT    PRIMARY KEY,
    password_hash     TEXT    NOT NULL,
    max_submits_per_s BIGINT  NOT NULL,
    created_at        BIGINT  NOT NULL
);

-- Every short message the SMS center acknowledged, written before its submit_sm_resp.
-- route: 'local' (this operator serves the destination) or 'interconnect' (serving_operator does).
CREATE TABLE sms_messages (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    system_id           TEXT    NOT NULL,
    source_addr         TEXT    NOT NULL,
    source_ton          BIGINT  NOT NULL,
    destination         TEXT    NOT NULL,
    serving_operator    TEXT    NOT NULL,
    route               TEXT    NOT NULL,
    esm_class           BIGINT  NOT NULL,
    data_coding         BIGINT  NOT NULL,
    registered_delivery BIGINT  NOT NULL,
    payload             TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    submitted_at        BIGINT  NOT NULL
);
CREATE INDEX sms_messages_state ON sms_messages (state, id);
