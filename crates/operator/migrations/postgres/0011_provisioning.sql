-- Provisioning (F6): orders from the business side and the node's porting flows, and the
-- commands each became, one per network element; the commands are the durable per-category
-- queues (state 'queued'), and a dead one keeps the reason.
CREATE TABLE provisioning_orders (
    id         BIGINT PRIMARY KEY,
    msisdn     TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    category   TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    -- Where the order came from, once: 'api:<idempotency key>:<n>', 'message:<id>'.
    source     TEXT   UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX provisioning_orders_msisdn ON provisioning_orders (msisdn, id);

CREATE TABLE provisioning_commands (
    id       BIGINT PRIMARY KEY,
    order_id BIGINT NOT NULL REFERENCES provisioning_orders (id),
    category TEXT   NOT NULL,
    element  TEXT   NOT NULL,
    verb     TEXT   NOT NULL,
    msisdn   TEXT   NOT NULL,
    params   TEXT   NOT NULL,
    state    TEXT   NOT NULL CHECK (state IN ('queued', 'done', 'dead')),
    reason   TEXT,
    done_at  BIGINT
);
CREATE INDEX provisioning_commands_order ON provisioning_commands (order_id);
CREATE INDEX provisioning_commands_queued ON provisioning_commands (id) WHERE state = 'queued';
CREATE INDEX provisioning_commands_dead ON provisioning_commands (id) WHERE state = 'dead';
