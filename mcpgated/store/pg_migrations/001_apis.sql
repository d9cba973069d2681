-- PostgreSQL twin of migrations/001_apis.sql (the same tables, columns and
-- rules; the store's SQL is shared). Text compares and sorts bytewise
-- (COLLATE "C") as in SQLite, whatever the database's locale.
CREATE TABLE apis (
    id          TEXT COLLATE "C" PRIMARY KEY,
    definition  TEXT NOT NULL,
    deployed    TEXT,
    state       TEXT COLLATE "C" NOT NULL CHECK (state IN ('STOPPED', 'STARTED')),
    created_at  DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    deployed_at DOUBLE PRECISION
);
