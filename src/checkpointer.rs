//! The checkpointer: signs the heads of the tamper-evident signing log and audit log with the
//! audit key, every `log.checkpoint_rows` rows or `log.checkpoint_secs` seconds, stores the
//! checkpoints, writes each to the service log (so a log collector keeps a copy off the
//! machine) and keeps the evidence metrics.
//!
//! On the wiring floor: it joins the store (chain heads, checkpoints, the audit key's row) to
//! the HSM through [`SignBackend`]. Every instance runs one; a Postgres advisory lock lets one
//! at a time sign, so checkpoints are numbered 1, 2, ... per chain without gaps. Signing never
//! holds the chain heads' row locks: writers do not wait for the HSM.
//!
//! Metrics (per `chain`): `evidence_chain_head_seq`, `evidence_checkpoint_seq`,
//! `evidence_checkpoint_age_seconds` (absent before the first checkpoint),
//! `evidence_checkpoint_lag_rows` and `evidence_checkpoint_late` (1 when rows have waited
//! for a checkpoint longer than twice `log.checkpoint_secs`: no audit key, HSM down; the
//! service stays ready).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::{KeyPurpose, KeyStatus};
use crate::evidence::checkpoint::Checkpoint;
use crate::signer::{BackendError, SignBackend};
use crate::store::{ChainState, CheckpointTx, Store, StoreError};

/// How often the chain heads are looked at (at most; `log.checkpoint_secs` when shorter).
const POLL: Duration = Duration::from_secs(1);

/// When checkpoints are due, and who takes them.
#[derive(Clone, Debug)]
pub struct CheckpointPolicy {
    /// Due once this many rows follow the newest checkpoint.
    pub rows: u64,
    /// Due once the newest checkpoint is this old and rows follow it.
    pub every: Duration,
    /// This instance's name (signed into each checkpoint).
    pub instance: String,
}

/// Why checkpoints could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// There is no ready, active audit key (`serialmint create key NAME --purpose audit`).
    #[error("no audit key: make one with `serialmint create key NAME --purpose audit`")]
    NoAuditKey,
    /// The HSM did not sign.
    #[error("the audit key could not sign a checkpoint: {0}")]
    Sign(#[from] BackendError),
}

/// Whether `state`'s chain needs a checkpoint now.
fn due(state: &ChainState, policy: &CheckpointPolicy, force: bool) -> bool {
    let (cp_seq, cp_at) = match state.newest {
        Some((_, seq, at)) => (seq, Some(at)),
        None => (0, None),
    };
    let behind = state.head.seq - cp_seq;
    if behind <= 0 {
        return false;
    }
    force
        || behind as u64 >= policy.rows
        || cp_at.is_none_or(|at| (state.now - at).unsigned_abs() >= policy.every)
}

/// Takes the checkpoints due now (all chains with rows after their newest when `force`) and
/// returns them; none when another instance is taking them at this moment.
pub async fn take_due(
    store: &Store,
    backend: &dyn SignBackend,
    policy: &CheckpointPolicy,
    force: bool,
) -> Result<Vec<Checkpoint>, CheckpointError> {
    let Some((mut tx, states)) = store.begin_checkpoint().await? else {
        return Ok(Vec::new());
    };
    // The transaction ends here, whatever happens: a dropped one would hold the advisory
    // lock on its pooled connection until that connection is used again.
    match sign_due(store, backend, policy, force, &mut tx, &states).await {
        Ok(taken) => {
            tx.commit().await?;
            for cp in &taken {
                // The whole checkpoint on one line: `serialmint verify-log --checkpoints`
                // reads the service log as it is.
                let line = serde_json::to_string(cp).unwrap_or_default();
                tracing::info!(
                    chain = %cp.chain,
                    seq = cp.seq,
                    number = cp.number,
                    checkpoint = %line,
                    "{}",
                    crate::evidence::checkpoint::LOG_MESSAGE
                );
            }
            Ok(taken)
        }
        Err(e) => {
            tx.rollback().await?;
            Err(e)
        }
    }
}

/// Signs and stores (in `tx`) a checkpoint of every chain in `states` that is due.
async fn sign_due(
    store: &Store,
    backend: &dyn SignBackend,
    policy: &CheckpointPolicy,
    force: bool,
    tx: &mut CheckpointTx,
    states: &[ChainState],
) -> Result<Vec<Checkpoint>, CheckpointError> {
    let due: Vec<&ChainState> = states.iter().filter(|s| due(s, policy, force)).collect();
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let key = store
        .keys()
        .await?
        .into_iter()
        .filter(|k| k.purpose == KeyPurpose::Audit && k.active && k.status == KeyStatus::Ready)
        .filter_map(|k| k.sha3_384.map(|id| (k.created_at, id)))
        .max()
        .map(|(_, id)| id)
        .ok_or(CheckpointError::NoAuditKey)?;
    let mut taken = Vec::new();
    for state in due {
        let number = state.newest.map_or(1, |(n, _, _)| n + 1);
        let text = Checkpoint::message(
            state.chain.as_str(),
            number,
            state.head.seq,
            &crate::evidence::chain::hex(&state.head.hash),
            state.now,
            &policy.instance,
        );
        let di = Checkpoint::digest_info_of(&text);
        let sig = backend
            .sign(&key, std::slice::from_ref(&di))
            .await?
            .pop()
            .ok_or_else(|| BackendError::Failed("no signature".into()))?;
        let cp = Checkpoint::new_signed(
            state.chain,
            number,
            (state.head.seq, &state.head.hash),
            state.now,
            &policy.instance,
            &key,
            &sig,
        );
        tx.insert(&cp, &state.head.hash, &sig).await?;
        taken.push(cp);
    }
    Ok(taken)
}

/// Sets the evidence metrics from the chains' states; `since` is when this instance started
/// watching (a chain without a checkpoint is late once rows have waited that long).
pub fn record_metrics(states: &[ChainState], policy: &CheckpointPolicy, since: Instant) {
    for s in states {
        let chain = s.chain.as_str();
        metrics::gauge!("evidence_chain_head_seq", "chain" => chain).set(s.head.seq as f64);
        let (cp_seq, age) = match s.newest {
            Some((_, seq, at)) => {
                let age = (s.now - at).as_seconds_f64().max(0.0);
                metrics::gauge!("evidence_checkpoint_seq", "chain" => chain).set(seq as f64);
                metrics::gauge!("evidence_checkpoint_age_seconds", "chain" => chain).set(age);
                (seq, age)
            }
            None => (0, since.elapsed().as_secs_f64()),
        };
        let behind = (s.head.seq - cp_seq).max(0);
        metrics::gauge!("evidence_checkpoint_lag_rows", "chain" => chain).set(behind as f64);
        let late = behind > 0 && age > 2.0 * policy.every.as_secs_f64();
        metrics::gauge!("evidence_checkpoint_late", "chain" => chain)
            .set(f64::from(u8::from(late)));
    }
}

/// Runs the checkpointer until `shutdown` resolves. Failures are logged (once per distinct
/// failure, not every second) and tried again on the next look.
pub fn spawn(
    store: Store,
    backend: Arc<dyn SignBackend>,
    policy: CheckpointPolicy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        let since = Instant::now();
        let mut last_error = String::new();
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(POLL.min(policy.every)) => {}
            }
            let result = take_due(&store, backend.as_ref(), &policy, false).await;
            match result {
                Ok(_) => last_error.clear(),
                Err(e) => {
                    let msg = e.to_string();
                    if msg != last_error {
                        tracing::warn!(error = %msg, "tamper-evident log: checkpoint not taken");
                        last_error = msg;
                    }
                }
            }
            if let Ok(states) = store.chain_states().await {
                record_metrics(&states, &policy, since);
            }
        }
    })
}
