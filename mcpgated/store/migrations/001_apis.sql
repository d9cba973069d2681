-- API definitions: what the operator edited (definition), what the gateway
-- serves (deployed) and whether it is on (state).
CREATE TABLE apis (
    id          TEXT PRIMARY KEY,
    definition  TEXT NOT NULL,
    deployed    TEXT,
    state       TEXT NOT NULL CHECK (state IN ('STOPPED', 'STARTED')),
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    deployed_at REAL
);
