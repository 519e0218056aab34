-- origin_ref: the id the submitting SMS center gave a message it forwarded to us over the
-- interconnect (vendor TLV 0x1401). A center that crashed between our acknowledgement and its
-- own record of it forwards the message again; the unique index turns that repeat into the
-- message we already have, so the terminal does not get it twice under another reference.
ALTER TABLE sms_messages ADD COLUMN origin_ref TEXT;
CREATE UNIQUE INDEX sms_messages_origin ON sms_messages (system_id, origin_ref) WHERE origin_ref IS NOT NULL;
