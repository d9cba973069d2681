-- PostgreSQL twin of migrations/002_subscriptions.sql.
CREATE TABLE applications (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  DOUBLE PRECISION NOT NULL
);

CREATE TABLE subscriptions (
    id             TEXT COLLATE "C" PRIMARY KEY,
    api_id         TEXT COLLATE "C" NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    plan           TEXT COLLATE "C" NOT NULL,
    application_id TEXT COLLATE "C" NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    status         TEXT COLLATE "C" NOT NULL CHECK (status IN ('ACCEPTED', 'CLOSED')),
    created_at     DOUBLE PRECISION NOT NULL,
    closed_at      DOUBLE PRECISION
);
CREATE INDEX subscriptions_by_api ON subscriptions (api_id, created_at);
CREATE INDEX subscriptions_by_application ON subscriptions (application_id);

CREATE TABLE api_keys (
    id              TEXT COLLATE "C" PRIMARY KEY,
    subscription_id TEXT COLLATE "C" NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    key_hash        TEXT COLLATE "C" NOT NULL UNIQUE,
    prefix          TEXT COLLATE "C" NOT NULL,
    created_at      DOUBLE PRECISION NOT NULL,
    expires_at      DOUBLE PRECISION,
    revoked_at      DOUBLE PRECISION
);
CREATE INDEX api_keys_by_subscription ON api_keys (subscription_id, created_at);
