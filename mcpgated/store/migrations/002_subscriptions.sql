-- Consumers: applications subscribe to a plan of an API; subscriptions to
-- API_KEY plans hold keys. Only a key's SHA-256 (hex) is stored, never the key.
--
-- Deleting an application deletes its subscriptions and keys (cascade).
-- Deleting an API is refused while it has ACCEPTED subscriptions; its CLOSED
-- ones and their keys go with it (cascade).
CREATE TABLE applications (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL
);

CREATE TABLE subscriptions (
    id             TEXT PRIMARY KEY,
    api_id         TEXT NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    plan           TEXT NOT NULL,
    application_id TEXT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    status         TEXT NOT NULL CHECK (status IN ('ACCEPTED', 'CLOSED')),
    created_at     REAL NOT NULL,
    closed_at      REAL
);
CREATE INDEX subscriptions_by_api ON subscriptions (api_id, created_at);
CREATE INDEX subscriptions_by_application ON subscriptions (application_id);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    key_hash        TEXT NOT NULL UNIQUE,
    prefix          TEXT NOT NULL,
    created_at      REAL NOT NULL,
    expires_at      REAL,
    revoked_at      REAL
);
CREATE INDEX api_keys_by_subscription ON api_keys (subscription_id, created_at);
