-- The registry: agents with their versions, humans, credentials, and the append-only event log.
-- Portable SQL: the PostgreSQL backend runs the same statements (BIGINT, TEXT, BOOLEAN only).

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    environment TEXT NOT NULL,
    state       TEXT NOT NULL,
    class       TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX agents_owner ON agents (owner);

CREATE TABLE agent_versions (
    agent_id   TEXT NOT NULL REFERENCES agents (id),
    version    BIGINT NOT NULL,
    at_ms      BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    before_doc TEXT,
    after_doc  TEXT NOT NULL,
    PRIMARY KEY (agent_id, version)
);

CREATE TABLE humans (
    id         TEXT PRIMARY KEY,
    active     BOOLEAN NOT NULL,
    created_ms BIGINT NOT NULL,
    doc        TEXT NOT NULL
);

-- API keys are stored only as SHA-256 hashes of 256-bit random secrets.
CREATE TABLE credentials (
    key_hash   TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('admin', 'human')),
    human_id   TEXT REFERENCES humans (id),
    created_ms BIGINT NOT NULL,
    CHECK ((kind = 'admin') = (human_id IS NULL))
);

CREATE TABLE events (
    seq        BIGINT PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    agent_id   TEXT,
    chain_id   TEXT,
    mandate_id TEXT,
    tool       TEXT,
    resource   TEXT,
    decision   TEXT,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX events_agent ON events (agent_id, seq);
CREATE INDEX events_kind ON events (kind, seq);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
