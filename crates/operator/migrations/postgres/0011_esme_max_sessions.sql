-- Sessions an ESME may hold bound at once; a bind beyond them is refused (ESME_RBINDFAIL).
ALTER TABLE esme_accounts ADD COLUMN max_sessions BIGINT NOT NULL DEFAULT 8;
