-- One row every posting transaction updates first. It serializes money movements, so balance
-- rows are never locked by two transactions at once: PostgreSQL's row-lock queues can otherwise
-- deadlock even when every transaction locks accounts in the same order.
CREATE TABLE ledger_head (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    journals BIGINT NOT NULL
);
INSERT INTO ledger_head (id, journals) VALUES (1, 0);
