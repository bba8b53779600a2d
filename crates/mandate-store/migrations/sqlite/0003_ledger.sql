-- The ledger: events keyed by their sequence number, indexes for reading them by chain, tool and
-- time, and the signed checkpoints that anchor the hash chain.

-- `seq` becomes the table's own key (an INTEGER PRIMARY KEY is SQLite's rowid): one B-tree fewer to
-- update per append, and reading in sequence order (verification, export, paging) walks the table
-- itself instead of an index and then the table. Same columns, same values.
CREATE TABLE events_by_seq (
    seq        INTEGER PRIMARY KEY,
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
INSERT INTO events_by_seq (seq, at_ms, kind, actor, agent_id, chain_id, mandate_id, tool, resource, decision, detail, prev_hash, hash)
    SELECT seq, at_ms, kind, actor, agent_id, chain_id, mandate_id, tool, resource, decision, detail, prev_hash, hash
    FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_by_seq RENAME TO events;
CREATE INDEX events_agent ON events (agent_id, seq);
CREATE INDEX events_kind ON events (kind, seq);

-- Every index is paid for on every append (group commit writes each touched index page once per
-- batch), so only the reads that need one get one: a chain (the chain view, blast radius, and a
-- mandate through its chain), a tool, and a time range. Filters by actor, decision or mandate alone
-- scan in sequence order.
CREATE INDEX events_chain ON events (chain_id, seq) WHERE chain_id IS NOT NULL;
CREATE INDEX events_tool ON events (tool, seq) WHERE tool IS NOT NULL;
CREATE INDEX events_at ON events (at_ms);

-- Checkpoints are kept beside the events, not as events: a checkpoint signs the head of the chain,
-- and an event recording it would move the head it signs. `public_key_jwk` is the signing key's
-- public JWK, so a checkpoint still verifies after its key is rotated out.
CREATE TABLE ledger_checkpoints (
    seq            INTEGER PRIMARY KEY,
    hash           TEXT NOT NULL,
    at_ms          BIGINT NOT NULL,
    kid            TEXT NOT NULL,
    public_key_jwk TEXT NOT NULL,
    signature      TEXT NOT NULL
);
