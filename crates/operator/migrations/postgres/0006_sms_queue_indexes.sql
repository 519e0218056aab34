-- The schedule's and the queues' scans, each on an index that holds only the rows it wants,
-- so that the scheduler (every 500 ms) and the interconnect rescan (every second) read only the
-- messages they act on, not every open one (the forwarded ones waiting for a peer's receipt
-- among them).
DROP INDEX sms_messages_open;
DROP INDEX sms_messages_pending;
-- A terminal's waiting messages (attach, session rescan).
CREATE INDEX sms_messages_local_queue ON sms_messages (destination, id) WHERE state = 'queued' AND route = 'local';
-- Local messages whose next delivery attempt is due.
CREATE INDEX sms_messages_local_due ON sms_messages (next_attempt_at) WHERE state = 'queued' AND route = 'local';
-- Messages still to forward, by peer.
CREATE INDEX sms_messages_forward_queue ON sms_messages (serving_operator, id) WHERE state = 'queued' AND route = 'interconnect';
-- Validity ends of messages still here.
CREATE INDEX sms_messages_expiry ON sms_messages (expires_at) WHERE state = 'queued';
