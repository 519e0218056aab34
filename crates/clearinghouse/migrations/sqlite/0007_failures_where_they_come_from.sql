-- A failed verification is charged to the operator held responsible for it, not to the
-- number: the requester whose proof disagreed with the deposit, or the donor whose deposits
-- for the number disagree with more than one requester (docs/PORTING.md, "Failed
-- verifications"). Rows written before have no operator and count against nobody; the
-- supervisor deletes them with the other rows past the window.
ALTER TABLE verification_failures ADD COLUMN requester_id BIGINT REFERENCES operators(id);
ALTER TABLE verification_failures ADD COLUMN donor_id BIGINT REFERENCES operators(id);
ALTER TABLE verification_failures ADD COLUMN operator_id BIGINT REFERENCES operators(id);
CREATE INDEX verification_failures_charged ON verification_failures(operator_id, msisdn, at);
CREATE INDEX verification_failures_charged_total ON verification_failures(operator_id, at);
CREATE INDEX verification_failures_at ON verification_failures(at);

-- What a violation is for: a missed deadline (as every earlier row), a requester refused
-- after too many failed verifications, or a donor whose deposit was held responsible for one.
-- For the last two the deadline is the time of the offence and the lateness zero.
ALTER TABLE violations ADD COLUMN kind TEXT NOT NULL DEFAULT 'deadline_missed';

-- Deposits nobody used are deleted once past their retention (`Clearinghouse::expire_once`).
CREATE INDEX proof_deposits_created ON proof_deposits(created_at);
