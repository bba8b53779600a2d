//! Group commit on SQLite: how a batch becomes one statement list on the store's one writer
//! connection (the queue, the writer task and its supervision are [`crate::group`]'s). The batch is
//! one multi-row `INSERT` in autocommit mode (`BEGIN`, `INSERT`s and `COMMIT` as one statement list
//! above 256 rows), committed with `synchronous = FULL`.
//!
//! The batch goes through the store's single writer connection like every other transaction. Those
//! transactions append their own events (reading the head inside their transaction), so the head
//! this writer remembers can be stale; the primary key on `seq` catches that, and the batch is built
//! again on the head read from the table (see [`commit`]).
//!
//! Rejected, each measured: a timer that holds events back to fill a batch (adds latency when idle;
//! under load neither a fixed wait of 150 or 400 µs nor waiting for decisions announced as under way
//! raised throughput, because at a steady state the next batch's callers are still on the network);
//! `synchronous = NORMAL` (an acknowledged event could be lost in a power cut); one statement per
//! event (a round trip to SQLite's thread per row); yielding to the runtime's ready tasks before
//! taking a batch (batches grew about 2.3 times, but the SQLite thread then waited for a pass over
//! the run queue instead of syncing while decisions computed: at 64 clients fewer cores were used
//! and p99 grew); three fewer ledger indexes (kind, time, tool: no change measurable in the load
//! test, so the reads keep them); `fdatasync` instead of `fsync` for SQLite (no change measurable).

use crate::group::{chain, push_insert, Batches, Claimed, Cursor, Head, Row};
use crate::sqlite::db;
use crate::{ClaimOutcome, StoreError};
use async_trait::async_trait;
use mandate_core::event::{NewEvent, GENESIS_HASH};
use sqlx::pool::PoolConnection;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

/// SQLite's batches.
pub(crate) struct SqliteBatches;

#[async_trait]
impl Batches for SqliteBatches {
    type Db = Sqlite;

    /// Claims are granted as they are: one process uses a SQLite file, and its own memory (the
    /// replay cache and the budgets) is exact (see [`crate::Store::append_claimed`]).
    async fn commit(
        conn: &mut PoolConnection<Sqlite>,
        cursor: &mut Cursor,
        events: &[NewEvent],
        claims: &[Claimed],
    ) -> Result<(i64, Vec<ClaimOutcome>), StoreError> {
        let first = commit(conn, &mut cursor.head, events).await?;
        Ok((first, vec![ClaimOutcome::Granted; claims.len()]))
    }

    fn db(e: sqlx::Error) -> StoreError {
        db(e)
    }
}

/// Appends `events` in one transaction; returns the first one's sequence number.
///
/// The whole transaction is one statement list ([`batch`]), one hand-off to SQLite's worker thread
/// and back, and the head of the chain is the one this writer left after its last batch, so a batch
/// costs no read. Other transactions append too (a registration with its
/// event), so that head may be stale: then the first insert reuses a taken sequence number, the
/// primary key refuses it, `INSERT OR ROLLBACK` abandons the batch whole, and it is built again on the
/// head read from the table. Sequence numbers are never reused (events are only ever added), so a
/// stale head cannot go unnoticed.
pub(crate) async fn commit(
    conn: &mut PoolConnection<Sqlite>,
    head: &mut Option<Head>,
    events: &[NewEvent],
) -> Result<i64, StoreError> {
    let mut retried = false;
    loop {
        let (seq, prev) = match head.take() {
            Some(known) => known,
            None => read_head(conn).await?,
        };
        let rows = chain(seq, prev, events.iter());
        let result = batch(&rows).build().execute(&mut **conn).await;
        match result {
            Ok(_) => {
                // The rows follow `seq` (the head they were linked to).
                *head = rows.last().map(|r| (r.seq, r.hash.clone()));
                return Ok(seq + 1);
            }
            Err(e) => {
                let stale = matches!(&e, sqlx::Error::Database(d) if d.is_unique_violation());
                // `INSERT OR ROLLBACK` has ended the transaction when a row was refused (and this
                // `ROLLBACK` then finds none). After any other failure the transaction may still be open:
                // roll it back, and let the pool replace the connection rather than reuse it in an
                // unknown state.
                let _ = sqlx::query("ROLLBACK").execute(&mut **conn).await;
                if !stale {
                    conn.close_on_drop();
                }
                if stale && !retried {
                    retried = true;
                    continue;
                }
                return Err(db(e));
            }
        }
    }
}

async fn read_head(conn: &mut SqliteConnection) -> Result<Head, StoreError> {
    let head: Option<Head> = sqlx::query_as("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    Ok(head.unwrap_or_else(|| (0, GENESIS_HASH.to_owned())))
}

/// Rows per `INSERT` statement. A batch of up to this many is one `INSERT` in autocommit mode: one
/// statement, one transaction, one result back from SQLite's thread. Larger batches are `BEGIN`,
/// statements of this many rows, and `COMMIT`. 256 rows of 13 values stay far below SQLite's 32766
/// bound variables per statement. The statements are `INSERT OR ROLLBACK`: a failed batch is
/// abandoned whole, so SQLite need not keep a statement journal to undo half a statement.
const MAX_ROWS: usize = 256;

/// The inserts of `rows` as one statement list: a single `INSERT OR ROLLBACK` when it fits in one,
/// else `BEGIN`, the `INSERT`s and `COMMIT`.
fn batch<'a>(rows: &'a [Row<'a>]) -> QueryBuilder<'a, Sqlite> {
    let several = rows.len() > MAX_ROWS;
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(if several { "BEGIN; " } else { "" });
    for chunk in rows.chunks(MAX_ROWS) {
        push_insert(&mut q, "INSERT OR ROLLBACK", chunk);
        q.push("; ");
    }
    if several {
        q.push("COMMIT;");
    }
    q
}

/// Appends `event` inside `tx`, a transaction that also changes state (a registration with its
/// event): the head is read inside it, and a plain `INSERT` leaves a failure to the transaction.
pub(crate) async fn append_in(tx: &mut SqliteConnection, event: &NewEvent) -> Result<i64, StoreError> {
    let (seq, prev) = read_head(tx).await?;
    let rows = chain(seq, prev, std::iter::once(event));
    let mut q = QueryBuilder::new("");
    push_insert(&mut q, "INSERT", &rows);
    q.build().execute(&mut *tx).await.map_err(db)?;
    Ok(seq + 1)
}
