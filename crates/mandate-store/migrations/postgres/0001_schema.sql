-- Mandate on PostgreSQL: the same tables and columns as the SQLite schema after its migration 0007,
-- so that both backends map rows to records through the same code. Times are BIGINT Unix
-- milliseconds or seconds (as the column names say), documents are TEXT holding JSON exactly as
-- written (the ledger hashes `detail` byte for byte, so it must never be normalised as JSONB would).

-- The registry.
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

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Mandates: the trusted record behind every token, with its revocation.
CREATE TABLE mandates (
    id            TEXT PRIMARY KEY,
    chain_id      TEXT NOT NULL,
    parent_id     TEXT REFERENCES mandates (id),
    depth         BIGINT NOT NULL,
    agent_id      TEXT NOT NULL REFERENCES agents (id),
    root          TEXT NOT NULL,
    issued_at     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    max_calls     BIGINT NOT NULL,
    used_calls    BIGINT NOT NULL DEFAULT 0,
    kid           TEXT NOT NULL,
    revoked_at    BIGINT,
    revoked_by    TEXT,
    revoke_reason TEXT,
    doc           TEXT NOT NULL
);
CREATE INDEX mandates_chain ON mandates (chain_id);
CREATE INDEX mandates_root ON mandates (root);
CREATE INDEX mandates_revoked ON mandates (revoked_at, expires_at);

CREATE TABLE mandate_agents (
    mandate_id TEXT NOT NULL REFERENCES mandates (id),
    agent_id   TEXT NOT NULL,
    PRIMARY KEY (mandate_id, agent_id)
);
CREATE INDEX mandate_agents_agent ON mandate_agents (agent_id);

-- The ledger: one hash-chained sequence, whatever the number of nodes writing it. Every writer
-- appends under one transaction-scoped advisory lock and reads the head inside it, so `seq` is
-- gapless and each event links to the one before it.
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
CREATE INDEX events_chain ON events (chain_id, seq) WHERE chain_id IS NOT NULL;
CREATE INDEX events_tool ON events (tool, seq) WHERE tool IS NOT NULL;
CREATE INDEX events_at ON events (at_ms);

CREATE TABLE ledger_checkpoints (
    seq            BIGINT PRIMARY KEY,
    hash           TEXT NOT NULL,
    at_ms          BIGINT NOT NULL,
    kid            TEXT NOT NULL,
    public_key_jwk TEXT NOT NULL,
    signature      TEXT NOT NULL
);

-- The decision engine's state.
CREATE TABLE tools (
    name               TEXT PRIMARY KEY,
    server             TEXT NOT NULL,
    data_class         TEXT NOT NULL,
    risk               TEXT NOT NULL,
    server_environment TEXT NOT NULL,
    source             TEXT NOT NULL,
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
    doc            TEXT NOT NULL
);
CREATE INDEX approvals_status ON approvals (status, created_ms);
CREATE INDEX approvals_mandate ON approvals (mandate_id, status, expires_ms);

CREATE TABLE tool_pins (
    name               TEXT PRIMARY KEY,
    server             TEXT NOT NULL,
    pinned_sha256      TEXT NOT NULL,
    pinned_definition  TEXT NOT NULL,
    pending_sha256     TEXT,
    pending_definition TEXT,
    flags              TEXT NOT NULL DEFAULT '[]',
    updated_ms         BIGINT NOT NULL,
    updated_by         TEXT NOT NULL
);

CREATE TABLE intent_categories (
    name        TEXT PRIMARY KEY,
    body        TEXT,
    updated_ms  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL
);

CREATE TABLE drift_profiles (
    category    TEXT PRIMARY KEY,
    body        TEXT NOT NULL,
    updated_ms  BIGINT NOT NULL
);

-- Takes the ledger's advisory lock for the rest of the transaction, then reads the head of the
-- chain: one round trip for what every append needs first. In a VOLATILE PL/pgSQL function each
-- statement reads a snapshot of its own, so under READ COMMITTED the head is read after the lock is
-- held and is the newest committed one. The lock key is "mandate" in ASCII.
CREATE FUNCTION mandate_lock_ledger() RETURNS TABLE (head_seq BIGINT, head_hash TEXT)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(30787899219866725);
    RETURN QUERY SELECT e.seq, e.hash FROM events e ORDER BY e.seq DESC LIMIT 1;
END
$$;
