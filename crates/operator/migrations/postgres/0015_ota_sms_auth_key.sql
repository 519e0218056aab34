-- F3 with F7: the SMS-authentication key an OTA job writes into a card is one of the SMS
-- center's keys (sms_auth_keys), issued for the job and activated by its proof of receipt.
-- The job names it by version (the card's IMSI completes it); the key itself exists once,
-- sealed, in sms_auth_keys. NULL: not issued yet (the job's first attempt issues it).
ALTER TABLE ota_jobs ADD COLUMN sms_auth_version BIGINT CHECK (sms_auth_version BETWEEN 1 AND 255);
ALTER TABLE ota_jobs DROP COLUMN product_keys_sealed;
ALTER TABLE sim_cards DROP COLUMN product_keys_sealed;
