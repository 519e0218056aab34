-- When a message may first be delivered (SMPP schedule_delivery_time), Unix ms; 0: at once.
-- A message scheduled for later is neither handed over at its commit nor at its terminal's
-- attach, nor forwarded, before then.
ALTER TABLE sms_messages ADD COLUMN scheduled_at BIGINT NOT NULL DEFAULT 0;
