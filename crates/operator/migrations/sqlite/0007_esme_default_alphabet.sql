-- What an ESME's data_coding 0 means: 'gsm' (GSM 03.38, one septet an octet) or 'latin1'.
ALTER TABLE esme_accounts ADD COLUMN default_alphabet TEXT NOT NULL DEFAULT 'gsm';
