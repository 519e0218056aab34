-- Store-and-forward: what delivery needs to survive a restart.
-- expires_at: end of the validity period (Unix ms); after it the message expires.
-- attempts / next_attempt_at: delivery attempts while the terminal is absent, with back-off.
-- remote_id: the message id the next SMS center gave a message forwarded over the interconnect;
--   its delivery receipt names that id.
-- receipt: 'none', 'owed' (final, the submitting ESME asked for a receipt and has not
--   acknowledged one) or 'sent'.
ALTER TABLE sms_messages ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sms_messages ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sms_messages ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sms_messages ADD COLUMN remote_id TEXT;
ALTER TABLE sms_messages ADD COLUMN done_at BIGINT;
ALTER TABLE sms_messages ADD COLUMN receipt TEXT NOT NULL DEFAULT 'none';
-- Messages still to deliver, by destination; receipts still to send; a relayed receipt's message.
CREATE INDEX sms_messages_pending ON sms_messages (destination, id) WHERE state IN ('queued', 'forwarded');
CREATE INDEX sms_messages_receipt_owed ON sms_messages (id) WHERE receipt = 'owed';
CREATE INDEX sms_messages_remote ON sms_messages (serving_operator, remote_id) WHERE remote_id IS NOT NULL;
DROP INDEX sms_messages_state;
CREATE INDEX sms_messages_open ON sms_messages (id) WHERE state IN ('queued', 'forwarded');
