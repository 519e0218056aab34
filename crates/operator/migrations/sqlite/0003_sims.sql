-- The SIMs this operator issued: IMSI, the number it serves, and K_sim, the key a terminal
-- proves it holds when it attaches (as an AuC holds Ki; hex).
CREATE TABLE sims (
    imsi   TEXT PRIMARY KEY,
    msisdn TEXT NOT NULL UNIQUE,
    k_sim  TEXT NOT NULL
);
