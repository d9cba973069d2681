-- Tool-definition pinning (mcpgated.policy.pinning): per API, one pin per
-- tool, prompt or resource template, keyed by (kind, name).
--
-- approved/definition: the fingerprint and canonical JSON trusted (pinned on
-- first use or approved by an operator; NULL until one is). pending: a
-- definition seen since that awaits a decision (status 'pending'), or was
-- refused (status 'rejected'). seen: the fingerprint of the last list result
-- that had the item (NULL once a complete list lacked it).
CREATE TABLE pins (
    id                 TEXT PRIMARY KEY,
    api_id             TEXT NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    kind               TEXT NOT NULL,
    name               TEXT NOT NULL,
    approved           TEXT,
    definition         TEXT,
    approved_at        REAL,
    approved_by        TEXT,
    status             TEXT NOT NULL CHECK (status IN ('approved', 'pending', 'rejected')),
    pending            TEXT,
    pending_definition TEXT,
    pending_at         REAL,
    seen               TEXT,
    seen_at            REAL,
    created_at         REAL NOT NULL,
    updated_at         REAL NOT NULL,
    UNIQUE (api_id, kind, name)
);

-- Every definition a pin trusted or refused, and by whom.
CREATE TABLE pin_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    pin_id      TEXT NOT NULL REFERENCES pins (id) ON DELETE CASCADE,
    action      TEXT NOT NULL CHECK (action IN ('pinned', 'approved', 'rejected')),
    fingerprint TEXT NOT NULL,
    definition  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE INDEX pin_history_by_pin ON pin_history (pin_id, id);

-- Drift events: a definition changed, a new item, a removed one (the newest
-- 1000 per API are kept).
CREATE TABLE pin_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    api_id          TEXT NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    pin_id          TEXT REFERENCES pins (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    name            TEXT NOT NULL,
    type            TEXT NOT NULL CHECK (type IN ('new', 'changed', 'removed')),
    old_fingerprint TEXT,
    new_fingerprint TEXT,
    diff            TEXT NOT NULL,
    session         TEXT,
    at              REAL NOT NULL
);
CREATE INDEX pin_events_by_api ON pin_events (api_id, id);
