-- F3, SMS authentication: the key the SMS center shares with each SIM, in versions, and the
-- per-SIM counter that every tagged SMS-DELIVER carries.
--
-- A key is stored sealed (AES-256-GCM under the node's key-encryption key, with the IMSI and
-- version as associated data, so a sealed key moved to another row does not open). It is
-- issued, then activated once the SIM holds it; from then the SMS center tags with it, and the
-- keys before it are retired: kept until retired_at (activation + the grace period), then
-- deleted.
CREATE TABLE sms_auth_keys (
    imsi         TEXT   NOT NULL,
    version      BIGINT NOT NULL CHECK (version BETWEEN 1 AND 255),
    sealed_key   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    activated_at BIGINT,
    retired_at   BIGINT,
    PRIMARY KEY (imsi, version)
);

-- Counters below reserved_until may have been used: a node takes them in blocks, writing the
-- block's end here before it uses the first of them, and after a restart (or kill -9) goes on
-- from this mark, so no counter is used twice.
CREATE TABLE sms_auth_counters (
    imsi           TEXT   PRIMARY KEY,
    reserved_until BIGINT NOT NULL
);
