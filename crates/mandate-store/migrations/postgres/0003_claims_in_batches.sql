-- Claims ride with the ledger's batch: a node makes every claim of a batch in the transaction that
-- appends the batch's decisions, in one statement (`mandate_claim_batch`), instead of one
-- transaction per claim. A claim and its decision now commit together, durably, or not at all: no
-- claim outlives a decision that was never recorded, and nothing needs giving back.

DROP FUNCTION mandate_claim(TEXT, BIGINT, TEXT[]);

-- Claims a batch of calls, in order. Item i has the proof id `replay_keys[i]` (NULL: none) kept
-- until `replay_expires[i]`, and spends a call of each of the next `chain_lengths[i]` mandates of
-- `chain_ids` (its chain, root first). Returns one answer per item: `granted`, `replayed`,
-- `exhausted:<mandate id>` (the shallowest mandate without room; nothing is counted, but the
-- proof id stays used) or `unknown:<mandate id>` (a mandate of the chain has no budget row;
-- nothing is counted). Items are claimed one after the other, so two calls of one chain in the
-- same batch count as two, and one proof presented twice in a batch is replayed the second time.
--
-- Every budget row the batch touches is locked first, in id order, and the ledger's advisory lock
-- only after the claims (batches of several nodes then always lock in the same order, and never
-- deadlock, and the claims are not made while the lock is held). Then, as `mandate_lock_ledger`
-- does, the head of the chain is read under the lock: one round trip for claims, lock and head.
CREATE FUNCTION mandate_claim_batch(replay_keys TEXT[], replay_expires BIGINT[], chain_ids TEXT[], chain_lengths INT[])
RETURNS TABLE (answers TEXT[], head_seq BIGINT, head_hash TEXT)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    got TEXT[] := '{}';
    items INT := COALESCE(cardinality(chain_lengths), 0);
    next INT := 1;
    ids TEXT[];
    wanted INT;
    found_id TEXT;
    counted INT;
    fresh TEXT[];
    seen TEXT[] := '{}';
BEGIN
    PERFORM 1 FROM mandate_budgets WHERE id = ANY (chain_ids) ORDER BY id FOR UPDATE;
    -- Every proof id of the batch kept in one statement; `fresh` are those no one kept before (an
    -- id twice in the batch is kept once, and is fresh for its first item only).
    WITH kept AS (
        INSERT INTO proof_replays (key, expires_at)
            SELECT u.k, u.e FROM unnest(replay_keys, replay_expires) AS u (k, e) WHERE u.k IS NOT NULL
            ON CONFLICT DO NOTHING
            RETURNING key
    )
    SELECT COALESCE(array_agg(key), '{}') INTO fresh FROM kept;
    FOR i IN 1 .. items LOOP
        wanted := chain_lengths[i];
        ids := chain_ids[next : next + wanted - 1];
        next := next + wanted;
        IF replay_keys[i] IS NOT NULL THEN
            IF NOT (replay_keys[i] = ANY (fresh)) OR replay_keys[i] = ANY (seen) THEN
                got := got || 'replayed'::TEXT;
                CONTINUE;
            END IF;
            seen := seen || replay_keys[i];
        END IF;
        IF wanted = 0 THEN
            got := got || 'granted'::TEXT;
            CONTINUE;
        END IF;
        IF wanted = 1 THEN
            -- A chain of one (a mandate granted by a human, not delegated): one statement.
            UPDATE mandate_budgets SET used = used + 1 WHERE id = ids[1] AND used < max_calls;
            IF FOUND THEN
                got := got || 'granted'::TEXT;
            ELSIF EXISTS (SELECT 1 FROM mandate_budgets WHERE id = ids[1]) THEN
                got := got || ('exhausted:' || ids[1]);
            ELSE
                got := got || ('unknown:' || ids[1]);
            END IF;
            CONTINUE;
        END IF;
        SELECT u.id INTO found_id FROM unnest(ids) AS u (id)
            WHERE NOT EXISTS (SELECT 1 FROM mandate_budgets b WHERE b.id = u.id) LIMIT 1;
        IF found_id IS NOT NULL THEN
            got := got || ('unknown:' || found_id);
            CONTINUE;
        END IF;
        SELECT id INTO found_id FROM mandate_budgets
            WHERE id = ANY (ids) AND used >= max_calls ORDER BY depth LIMIT 1;
        IF found_id IS NOT NULL THEN
            got := got || ('exhausted:' || found_id);
            CONTINUE;
        END IF;
        UPDATE mandate_budgets SET used = used + 1 WHERE id = ANY (ids);
        GET DIAGNOSTICS counted = ROW_COUNT;
        IF counted <> wanted THEN
            -- Only a chain naming one mandate twice gets here; never count it.
            RAISE EXCEPTION 'mandate_claim_batch: % rows for % mandates', counted, wanted;
        END IF;
        got := got || 'granted'::TEXT;
    END LOOP;
    PERFORM pg_advisory_xact_lock(30787899219866725);
    RETURN QUERY SELECT got, h.seq, h.hash
        FROM (SELECT 1) AS one
        LEFT JOIN LATERAL (SELECT e.seq, e.hash FROM events e ORDER BY e.seq DESC LIMIT 1) AS h ON TRUE;
END
$$;

-- Both tables grow in the order of these columns (a proof id is kept until a little after it was
-- seen; an event's time is when it was appended), and both columns are only ever read by range
-- (pruning expired proof ids, events in a time window): a BRIN index serves that for a fraction of a
-- B-tree's cost on every insert, which is on the path of every allowed call.
DROP INDEX proof_replays_expiry;
CREATE INDEX proof_replays_expiry ON proof_replays USING brin (expires_at);
DROP INDEX events_at;
CREATE INDEX events_at ON events USING brin (at_ms);

-- The whole batch in one statement, when the node can predict it: it left the head last (one node,
-- or the last batch of several was its own) and expects every claim to be won. The claims are made
-- as `mandate_claim_batch` makes them (so the lock order is the same); then, under the ledger's
-- lock, the head must still be (expect_seq, expect_hash) and every claim granted, or the statement
-- fails with SQLSTATE MD001 (the head moved) or MD002 (a claim was refused) and, being its own
-- transaction, leaves nothing behind: the node then commits the batch the long way. Otherwise the
-- rows, linked by the node after the expected head (one element of each array per event), are
-- inserted and the other nodes notified; returns the last row's sequence number.
CREATE FUNCTION mandate_append_batch(
    expect_seq BIGINT, expect_hash TEXT,
    replay_keys TEXT[], replay_expires BIGINT[], chain_ids TEXT[], chain_lengths INT[],
    seqs BIGINT[], ats BIGINT[], kinds TEXT[], actors TEXT[], agents TEXT[], chains TEXT[],
    mandates TEXT[], tools TEXT[], resources TEXT[], decisions TEXT[], details TEXT[],
    prevs TEXT[], hashes TEXT[])
RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    got TEXT[];
    h_seq BIGINT;
    h_hash TEXT;
    last BIGINT;
BEGIN
    SELECT c.answers, c.head_seq, c.head_hash INTO got, h_seq, h_hash
        FROM mandate_claim_batch(replay_keys, replay_expires, chain_ids, chain_lengths) AS c;
    IF h_seq IS DISTINCT FROM expect_seq OR h_hash IS DISTINCT FROM expect_hash
        OR seqs[1] IS DISTINCT FROM expect_seq + 1 OR prevs[1] IS DISTINCT FROM expect_hash THEN
        RAISE EXCEPTION USING ERRCODE = 'MD001', MESSAGE = 'mandate_append_batch: the head moved';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(got) AS a (answer) WHERE a.answer <> 'granted') THEN
        RAISE EXCEPTION USING ERRCODE = 'MD002', MESSAGE = 'mandate_append_batch: a claim was refused';
    END IF;
    INSERT INTO events (seq, at_ms, kind, actor, agent_id, chain_id, mandate_id, tool, resource,
                        decision, detail, prev_hash, hash)
        SELECT * FROM unnest(seqs, ats, kinds, actors, agents, chains, mandates, tools, resources,
                             decisions, details, prevs, hashes);
    last := seqs[cardinality(seqs)];
    -- Delivered when the statement's transaction commits, and only then.
    PERFORM pg_notify('mandate_ledger', CAST(last AS TEXT));
    RETURN last;
END
$$;
