//! The chain heads (`log_chain_heads`): one row per chain, locked once per transaction that
//! appends to the chain, so appends from every instance are serialized through Postgres and
//! every row's `chain_seq`/`chain_hash` is written in the row's own transaction.
//!
//! The canonical bytes and the hashing are [`crate::evidence::chain`]'s; this file only
//! reads and writes the head.

use time::OffsetDateTime;

use super::{Result, StoreError};
use crate::evidence::chain::{Chain, ChainHash, Head};

/// A chain head, locked in a transaction, and that transaction's `now()` (the time the rows
/// it appends are recorded at).
pub(super) struct Locked {
    pub(super) head: Head,
    pub(super) now: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct HeadRow {
    seq: i64,
    hash: Vec<u8>,
    now: OffsetDateTime,
}

/// Locks the chain's head row until the transaction ends and reads it.
pub(super) async fn lock_head(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    chain: Chain,
) -> Result<Locked> {
    let row: HeadRow = sqlx::query_as(
        "SELECT seq, hash, now() AS now FROM log_chain_heads WHERE chain = $1 FOR UPDATE",
    )
    .bind(chain.as_str())
    .fetch_one(&mut **tx)
    .await?;
    let hash = ChainHash::try_from(row.hash.as_slice()).map_err(|_| {
        StoreError::Database(format!("corrupt row: the {chain} head's hash is not 32 bytes").into())
    })?;
    Ok(Locked {
        head: Head { seq: row.seq, hash },
        now: row.now,
    })
}

/// This host's time, to the microsecond (what Postgres keeps of a `timestamptz`: a row
/// hashed at this time reads back the same).
pub(super) fn micro_now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .unwrap_or(now)
}

/// Stores the chain's new head (in the transaction that locked it).
pub(super) async fn set_head(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    chain: Chain,
    head: &Head,
) -> Result<()> {
    sqlx::query(
        "UPDATE log_chain_heads SET seq = $2, hash = $3, updated_at = now() WHERE chain = $1",
    )
    .bind(chain.as_str())
    .bind(head.seq)
    .bind(head.hash.as_slice())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
