-- What several nodes must agree on before one of them allows a call: the proof's id is used once,
-- and every budget of the chain has room. A node claims both in one statement (`mandate_claim`)
-- before it records an allow; a claim that loses is a deny on that node.

-- Proof ids (`dpop:<jkt>:<jti>`) that some node accepted, until they could no longer be presented.
CREATE TABLE proof_replays (
    key        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL          -- Unix seconds after which the proof is refused as too old
);
CREATE INDEX proof_replays_expiry ON proof_replays (expires_at);

-- Each mandate's budget, counted apart from its row: a claim rewrites this narrow row (with room
-- on its page for the update to stay there), not the mandate's document. Filled by a trigger, so
-- every mandate has its row from the transaction that stores it.
CREATE TABLE mandate_budgets (
    id        TEXT PRIMARY KEY REFERENCES mandates (id),
    depth     BIGINT NOT NULL,
    max_calls BIGINT NOT NULL,
    used      BIGINT NOT NULL DEFAULT 0
) WITH (fillfactor = 50);

CREATE FUNCTION mandate_budget_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO mandate_budgets (id, depth, max_calls) VALUES (NEW.id, NEW.depth, NEW.max_calls);
    RETURN NEW;
END
$$;

CREATE TRIGGER mandates_budget AFTER INSERT ON mandates FOR EACH ROW EXECUTE FUNCTION mandate_budget_row();

-- Claims a call: the proof id (when given) and one call of the budget of every mandate in
-- `mandate_ids` (the chain, root first). Returns `granted`, `replayed`, or `exhausted:<mandate id>`
-- (the shallowest mandate without room; nothing is counted then, but the proof id stays used).
-- Rows are locked in id order, so concurrent claims on one chain never deadlock.
--
-- The claim's own commit does not wait for its WAL to reach the disk (`synchronous_commit` off
-- for this transaction only): every other node sees it at once, and the allow it makes possible is
-- acknowledged only after the decision's event commits durably, which flushes the WAL up to and
-- past this commit. A crash in between loses both the claim and an allow nobody was given; the
-- proof id could then be presented again, but to nodes that refused it meanwhile as used (fail
-- closed). So one fsync per batch of decisions, not one per claim.
CREATE FUNCTION mandate_claim(replay_key TEXT, replay_expires BIGINT, mandate_ids TEXT[]) RETURNS TEXT
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    wanted INT := COALESCE(cardinality(mandate_ids), 0);
    counted INT;
    full_id TEXT;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF replay_key IS NOT NULL THEN
        INSERT INTO proof_replays (key, expires_at) VALUES (replay_key, replay_expires) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RETURN 'replayed';
        END IF;
    END IF;
    IF wanted = 0 THEN
        RETURN 'granted';
    END IF;
    PERFORM 1 FROM mandate_budgets WHERE id = ANY (mandate_ids) ORDER BY id FOR UPDATE;
    SELECT id INTO full_id FROM mandate_budgets
        WHERE id = ANY (mandate_ids) AND used >= max_calls ORDER BY depth LIMIT 1;
    IF full_id IS NOT NULL THEN
        RETURN 'exhausted:' || full_id;
    END IF;
    UPDATE mandate_budgets SET used = used + 1 WHERE id = ANY (mandate_ids);
    GET DIAGNOSTICS counted = ROW_COUNT;
    IF counted < wanted THEN
        RAISE EXCEPTION 'mandate_claim: % of % mandates exist', counted, wanted;
    END IF;
    RETURN 'granted';
END
$$;

