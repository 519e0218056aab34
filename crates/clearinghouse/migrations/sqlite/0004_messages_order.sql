-- A step that makes an undelivered message moot (a deposit request once the deposit arrived)
-- withdraws it by order, through this index; through `messages_due` it would look at every
-- undelivered message due later.
CREATE INDEX messages_order ON messages(order_id, kind) WHERE delivered_at IS NULL;
