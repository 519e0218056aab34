-- Settlement in batches: an accepted order is `settling` until the clearinghouse's settler
-- settles the orders waiting in that state many at a time, in one transaction: one posting of
-- all their journals, one block of change log numbers, one statement per table
-- (`settler::settle_once`). Migration 0006's table, function and trigger go; the trigger
-- empties the table at every COMMIT, so it holds no row to lose.
DROP TRIGGER settle_at_commit ON settlements;
DROP FUNCTION numport_settle_at_commit();
DROP TABLE settlements;

-- The settler's queue: the orders waiting in `settling`, in the order they were accepted.
CREATE INDEX porting_orders_settling ON porting_orders(updated_at, id) WHERE state = 'settling';

-- An operator's settlement account never goes below zero. Every posting checks it before it
-- writes (`ledger::post`, `ledger::post_batch`); the schema refuses it as well, so that a
-- batch's balance update, sent without waiting for its answer, cannot overdraw an account
-- unnoticed: the COMMIT fails instead.
ALTER TABLE accounts ADD CONSTRAINT operator_accounts_not_overdrawn CHECK (operator_id IS NULL OR balance >= 0);
