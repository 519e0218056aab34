-- Settlement in batches. An accepted order is now `settling`, and the clearinghouse's settler
-- settles the orders waiting in that state many at a time, in one transaction: one posting of
-- all their journals, one block of change log numbers, one statement per table
-- (`settler::settle_once`). This replaces migration 0006's deferred trigger, which settled
-- each order at its own COMMIT: ~12 statements a port, and every settlement queued on
-- `ledger_head` behind the one before. Its table was emptied by that trigger at every COMMIT,
-- so nothing in it is lost here.
DROP TRIGGER settle_at_commit ON settlements;
DROP FUNCTION numport_settle_at_commit();
DROP TABLE settlements;

-- The settler's queue: the orders waiting in `settling`, in the order they were accepted.
CREATE INDEX porting_orders_settling ON porting_orders(updated_at, id) WHERE state = 'settling';

-- An operator's settlement account never goes below zero. Every posting checks it before it
-- writes (`ledger::post`, `ledger::post_batch`); the schema now refuses it as well, so that a
-- batch's balance update, sent without waiting for its answer, cannot overdraw an account
-- unnoticed: the COMMIT fails instead.
ALTER TABLE accounts ADD CONSTRAINT operator_accounts_not_overdrawn CHECK (operator_id IS NULL OR balance >= 0);
