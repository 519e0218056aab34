-- The TP-PID a message is delivered with (SMPP protocol_id): 0x7F for SIM data download, the
-- secured packets of the OTA server; 0 for every message before.
ALTER TABLE sms_messages ADD COLUMN protocol_id BIGINT NOT NULL DEFAULT 0;
