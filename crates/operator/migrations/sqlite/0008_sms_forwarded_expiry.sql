-- Validity ends of messages forwarded to another SMS center and not yet settled by its
-- receipt: one whose receipt never comes expires here too.
CREATE INDEX sms_messages_forwarded_expiry ON sms_messages (expires_at) WHERE state = 'forwarded';
