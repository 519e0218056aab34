-- Settlement in batches: an accepted order is `settling` until the clearinghouse's settler
-- settles it with the others waiting, in one transaction (`settler::settle_once`). This is
-- the settler's queue: the orders waiting in `settling`, in the order they were accepted.
CREATE INDEX porting_orders_settling ON porting_orders(updated_at, id) WHERE state = 'settling';

-- An operator's settlement account never goes below zero. Every posting checks it before it
-- writes (`ledger::post`, `ledger::post_batch`); the schema refuses it as well (SQLite adds no
-- CHECK to an existing table, hence a trigger).
CREATE TRIGGER operator_accounts_not_overdrawn BEFORE UPDATE OF balance ON accounts
WHEN NEW.operator_id IS NOT NULL AND NEW.balance < 0
BEGIN
    SELECT RAISE(ABORT, 'an operator account may not go below zero');
END;
