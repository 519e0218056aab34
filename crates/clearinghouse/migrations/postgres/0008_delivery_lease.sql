-- Which clearinghouse process delivers the outbox (`outbox::hold_delivery`). One process at a
-- time, so a message handed to a delivery attempt needs no lease of its own, and a delivery
-- pass writes no row to claim its messages. The holder renews the lease at half its length;
-- if it dies, another takes over once the lease runs out, and sends again what was in flight.
CREATE TABLE delivery_lease (
    id     BIGINT PRIMARY KEY CHECK (id = 1),
    holder TEXT   NOT NULL,
    until  BIGINT NOT NULL
);
INSERT INTO delivery_lease (id, holder, until) VALUES (1, '', 0);
