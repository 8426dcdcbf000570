//! Checkpoints of the tamper-evident log (`log_checkpoints`) and the chain heads they sign.
//!
//! One instance at a time takes a checkpoint: [`Store::begin_checkpoint`] holds a
//! transaction-scoped advisory lock (another instance skips its turn instead of waiting), reads
//! the chain heads without locking them (writers never wait for the HSM), and the signed
//! checkpoint is inserted in that transaction.

use time::OffsetDateTime;

use super::{Result, Store, StoreError};
use crate::evidence::chain::{Chain, ChainHash, Head};
use crate::evidence::checkpoint::Checkpoint;

/// The advisory lock the checkpointers of every instance take turns on.
const CHECKPOINT_LOCK: i64 = 0x7365_7269_616c_6d31; // "serialm1"

/// A chain's state as the checkpointer and the metrics see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainState {
    /// Which chain.
    pub chain: Chain,
    /// Its head.
    pub head: Head,
    /// Its newest checkpoint's number, sequence number and time, if any.
    pub newest: Option<(i64, i64, OffsetDateTime)>,
    /// The database's clock.
    pub now: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct StateRow {
    chain: String,
    seq: i64,
    hash: Vec<u8>,
    number: Option<i64>,
    cp_seq: Option<i64>,
    cp_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct CheckpointRow {
    chain: String,
    number: i64,
    seq: i64,
    hash: Vec<u8>,
    at: OffsetDateTime,
    instance: String,
    key_id: String,
    signature: Vec<u8>,
}

/// The chain named in a row (the tables' CHECK constraints admit only the two names).
fn chain_of(name: &str) -> Result<Chain> {
    Chain::from_name(name)
        .ok_or_else(|| StoreError::Database(format!("corrupt row: unknown chain {name:?}").into()))
}

/// A chain hash read from a row (the tables' CHECK constraints keep it 32 bytes).
fn hash_of(chain: Chain, bytes: &[u8]) -> Result<ChainHash> {
    ChainHash::try_from(bytes).map_err(|_| {
        StoreError::Database(format!("corrupt row: a {chain} hash is not 32 bytes").into())
    })
}

impl TryFrom<CheckpointRow> for Checkpoint {
    type Error = StoreError;

    fn try_from(r: CheckpointRow) -> Result<Self> {
        let chain = chain_of(&r.chain)?;
        Ok(Checkpoint::new_signed(
            chain,
            r.number,
            (r.seq, &hash_of(chain, &r.hash)?),
            r.at,
            &r.instance,
            &r.key_id,
            &r.signature,
        ))
    }
}

/// A transaction holding the checkpoint lock.
pub struct CheckpointTx(sqlx::Transaction<'static, sqlx::Postgres>);

const STATE: &str = "SELECT h.chain, h.seq, h.hash, c.number, c.seq AS cp_seq, c.at AS cp_at, \
     now() AS now FROM log_chain_heads h LEFT JOIN LATERAL (SELECT number, seq, at \
     FROM log_checkpoints c WHERE c.chain = h.chain ORDER BY number DESC LIMIT 1) c ON true \
     ORDER BY h.chain DESC";

fn states(rows: Vec<StateRow>) -> Result<Vec<ChainState>> {
    rows.into_iter()
        .map(|r| {
            let chain = chain_of(&r.chain)?;
            Ok(ChainState {
                chain,
                head: Head {
                    seq: r.seq,
                    hash: hash_of(chain, &r.hash)?,
                },
                newest: r
                    .number
                    .zip(r.cp_seq)
                    .zip(r.cp_at)
                    .map(|((n, s), a)| (n, s, a)),
                now: r.now,
            })
        })
        .collect()
}

impl Store {
    /// Every chain's head and newest checkpoint (signing log first).
    pub async fn chain_states(&self) -> Result<Vec<ChainState>> {
        states(sqlx::query_as(STATE).fetch_all(&self.pool).await?)
    }

    /// Takes the checkpoint lock, or `None` when another instance holds it.
    pub async fn begin_checkpoint(&self) -> Result<Option<(CheckpointTx, Vec<ChainState>)>> {
        let mut tx = self.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(CHECKPOINT_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(None);
        }
        let rows = sqlx::query_as(STATE).fetch_all(&mut *tx).await?;
        Ok(Some((CheckpointTx(tx), states(rows)?)))
    }

    /// All checkpoints, oldest first per chain (signing log first).
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let rows: Vec<CheckpointRow> = sqlx::query_as(
            "SELECT chain, number, seq, hash, at, instance, key_id, signature \
             FROM log_checkpoints ORDER BY chain DESC, number",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Checkpoint::try_from).collect()
    }
}

impl CheckpointTx {
    /// Stores a signed checkpoint.
    pub async fn insert(
        &mut self,
        cp: &Checkpoint,
        hash: &ChainHash,
        signature: &[u8],
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO log_checkpoints (chain, number, seq, hash, at, instance, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&cp.chain)
        .bind(cp.number)
        .bind(cp.seq)
        .bind(hash.as_slice())
        .bind(cp.at)
        .bind(&cp.instance)
        .bind(&cp.key_id)
        .bind(signature)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    /// Commits, releasing the lock.
    pub async fn commit(self) -> Result<()> {
        Ok(self.0.commit().await?)
    }

    /// Rolls back, releasing the lock.
    pub async fn rollback(self) -> Result<()> {
        Ok(self.0.rollback().await?)
    }
}
