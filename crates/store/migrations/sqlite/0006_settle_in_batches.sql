-- Settlement in batches: an accepted order is `settling` until the clearinghouse's settler
-- settles it with the others waiting, in one transaction (`settler::settle_once`). This is
-- the settler's queue: the orders waiting in `settling`, in the order they were accepted.
CREATE INDEX porting_orders_settling ON porting_orders(updated_at, id) WHERE state = 'settling';
