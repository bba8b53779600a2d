-- The decision engine's state: the tool catalogue, versioned policy sets, and human approvals.

CREATE TABLE tools (
    name               TEXT PRIMARY KEY,          -- server/tool
    server             TEXT NOT NULL,
    data_class         TEXT NOT NULL,
    risk               TEXT NOT NULL,
    server_environment TEXT NOT NULL,
    source             TEXT NOT NULL,             -- config | api
    updated_ms         BIGINT NOT NULL,
    updated_by         TEXT NOT NULL
);

CREATE TABLE policy_versions (
    version    BIGINT PRIMARY KEY,
    sha256     TEXT NOT NULL,
    text       TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL
);

CREATE TABLE approvals (
    id             TEXT PRIMARY KEY,
    mandate_id     TEXT NOT NULL REFERENCES mandates (id),
    chain_id       TEXT NOT NULL,
    agent_id       TEXT NOT NULL,
    tool           TEXT NOT NULL,
    resource       TEXT,
    arguments_hash TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'used')),
    created_ms     BIGINT NOT NULL,
    expires_ms     BIGINT NOT NULL,
    decided_by     TEXT,
    decided_ms     BIGINT,
    used_ms        BIGINT,
    doc            TEXT NOT NULL                  -- reasons, signals, policies, the request's facts
);
CREATE INDEX approvals_status ON approvals (status, created_ms);
