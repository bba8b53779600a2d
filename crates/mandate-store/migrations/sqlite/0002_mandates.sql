-- Mandates: the trusted record behind every token, with its revocation and its call counter.

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

-- Every agent that appears in a mandate's chain, so that suspending an agent finds every mandate it
-- is part of without scanning documents.
CREATE TABLE mandate_agents (
    mandate_id TEXT NOT NULL REFERENCES mandates (id),
    agent_id   TEXT NOT NULL,
    PRIMARY KEY (mandate_id, agent_id)
);
CREATE INDEX mandate_agents_agent ON mandate_agents (agent_id);
