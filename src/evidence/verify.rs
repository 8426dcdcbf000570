//! The offline verifier: given a chain's rows as exported (each with its claimed sequence
//! number and stored hash) and optionally checkpoints and the audit public key, it
//! recomputes the chain and names every finding precisely.
//!
//! How findings are told apart:
//! - a row whose link does not recompute, but whose successor links to its stored hash, was
//!   **changed** (its content no longer matches the hash it was written with);
//! - a missing sequence number means **deleted** rows (the row right after a gap cannot be
//!   checked: its predecessor's hash is gone);
//! - a row that links at another sequence number (after the row that is there, or after
//!   another displaced row) was **moved**: rows were reordered; a row that links at its own
//!   number, only after a displaced row, is intact;
//! - a valid checkpoint beyond the newest row means the log was **truncated**; one whose hash
//!   differs from the row at its number means the chain was rewritten since;
//! - a checkpoint that does not verify with the audit key is **forged**; a gap in checkpoint
//!   numbers is a checkpoint **missing**.
//!
//! The rows after the newest valid checkpoint are the window a truncation could hide in:
//! the report says how many there are.

use std::collections::{BTreeMap, HashMap};

use super::chain::{ChainHash, GENESIS, link};
use super::checkpoint::{Checkpoint, CheckpointError};
use crate::assertion::RsaPublicKey;

/// How far (in sequence numbers) a moved row is looked for.
const MOVE_WINDOW: i64 = 64;

/// One exported row of a chain.
pub struct Entry {
    /// The claimed sequence number (`None`: the row has no chain fields).
    pub seq: Option<i64>,
    /// The stored hash (`None` when absent or unreadable).
    pub hash: Option<ChainHash>,
    /// How to name the row in a finding (e.g. `serial S1 of acme/widget`).
    pub label: String,
    /// The row's canonical bytes at a given sequence number.
    pub bytes_at: Box<dyn Fn(i64) -> Vec<u8>>,
}

/// One thing the verifier found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The row at `seq` was changed after it was written.
    RowChanged {
        /// Its sequence number.
        seq: i64,
        /// Which row.
        label: String,
    },
    /// The rows `first..=last` are missing.
    RowsDeleted {
        /// The first missing sequence number.
        first: i64,
        /// The last missing one.
        last: i64,
    },
    /// The row at `seq` was written at `belongs_at`: rows were reordered.
    RowMoved {
        /// Where it is now.
        seq: i64,
        /// Where it was written.
        belongs_at: i64,
        /// Which row.
        label: String,
    },
    /// Two rows claim one sequence number.
    DuplicateSeq {
        /// The number.
        seq: i64,
    },
    /// A valid checkpoint names a sequence number after the newest row.
    Truncated {
        /// The newest row's sequence number (0: no chained row).
        log_ends_at: i64,
        /// The checkpoint's.
        checkpoint_seq: i64,
        /// The checkpoint's number.
        checkpoint: i64,
    },
    /// A valid checkpoint's hash differs from the row at its sequence number.
    CheckpointMismatch {
        /// The checkpoint's number.
        checkpoint: i64,
        /// Its sequence number.
        seq: i64,
    },
    /// A checkpoint that is not the audit key's.
    CheckpointForged {
        /// Why.
        error: CheckpointError,
    },
    /// Checkpoint numbers `first..=last` are missing.
    CheckpointMissing {
        /// The first missing number.
        first: i64,
        /// The last.
        last: i64,
    },
    /// A row's serial assertion is not what the row says or does not verify against the
    /// account-key chain (`verify-log --check-serials`).
    SerialRejected {
        /// The row's sequence number, when it has one.
        seq: Option<i64>,
        /// Which row.
        label: String,
        /// What is wrong, as "does not verify ..." or "says serial ...".
        reason: String,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::RowChanged { seq, label } => {
                write!(
                    f,
                    "row changed: seq {seq} ({label}) does not match its hash"
                )
            }
            Finding::RowsDeleted { first, last } if first == last => {
                write!(f, "row deleted: seq {first} is missing")
            }
            Finding::RowsDeleted { first, last } => {
                write!(f, "rows deleted: seq {first} to {last} are missing")
            }
            Finding::RowMoved {
                seq,
                belongs_at,
                label,
            } => write!(
                f,
                "rows reordered: seq {seq} ({label}) was written as seq {belongs_at}"
            ),
            Finding::DuplicateSeq { seq } => write!(f, "two rows claim seq {seq}"),
            Finding::Truncated {
                log_ends_at,
                checkpoint_seq,
                checkpoint,
            } => write!(
                f,
                "log truncated: checkpoint {checkpoint} covers seq {checkpoint_seq}, the log \
                 ends at seq {log_ends_at}"
            ),
            Finding::CheckpointMismatch { checkpoint, seq } => write!(
                f,
                "checkpoint {checkpoint} does not match the chain at seq {seq}: the chain was \
                 rewritten after it"
            ),
            Finding::CheckpointForged { error } => write!(f, "checkpoint forged: {error}"),
            Finding::CheckpointMissing { first, last } if first == last => {
                write!(f, "checkpoint missing: number {first}")
            }
            Finding::CheckpointMissing { first, last } => {
                write!(f, "checkpoints missing: numbers {first} to {last}")
            }
            Finding::SerialRejected {
                seq: Some(seq),
                label,
                reason,
            } => write!(f, "serial assertion rejected: seq {seq} ({label}) {reason}"),
            Finding::SerialRejected {
                seq: None,
                label,
                reason,
            } => write!(f, "serial assertion rejected: {label} {reason}"),
        }
    }
}

/// What the verifier found about one chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Rows with chain fields.
    pub chained_rows: usize,
    /// Rows without (written before the chain started).
    pub unchained_rows: usize,
    /// The newest row's sequence number (0: none).
    pub last_seq: i64,
    /// Checkpoints whose signature verified.
    pub valid_checkpoints: usize,
    /// The newest valid checkpoint's sequence number, if any.
    pub newest_checkpoint_seq: Option<i64>,
    /// Rows after the newest valid checkpoint (all chained rows when there is none).
    pub rows_after_checkpoint: i64,
    /// Everything wrong, in chain order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Verifies a chain's rows, and the checkpoints of that chain when an audit key is given
/// (without one, checkpoints are not looked at).
pub fn verify(
    entries: &[Entry],
    checkpoints: &[Checkpoint],
    audit_key: Option<&RsaPublicKey>,
) -> Report {
    let mut report = Report::default();
    let mut by_seq: BTreeMap<i64, &Entry> = BTreeMap::new();
    for e in entries {
        match e.seq {
            None => report.unchained_rows += 1,
            Some(seq) => {
                if by_seq.insert(seq, e).is_some() {
                    report.findings.push(Finding::DuplicateSeq { seq });
                }
            }
        }
    }
    report.chained_rows = by_seq.len();
    report.last_seq = by_seq.keys().next_back().copied().unwrap_or(0);

    // Walk the chain: gaps, and rows whose link does not recompute.
    let mut failing: Vec<i64> = Vec::new();
    let mut prev: (i64, Option<ChainHash>) = (0, Some(GENESIS));
    for (&seq, e) in &by_seq {
        let expected = prev.0 + 1;
        if seq > expected {
            report.findings.push(Finding::RowsDeleted {
                first: expected,
                last: seq - 1,
            });
        } else if let Some(p) = prev.1
            && e.hash != Some(link(&p, &(e.bytes_at)(seq)))
        {
            failing.push(seq);
        }
        prev = (seq, e.hash);
    }

    // Diagnose each failing row: moved, intact after a moved row, or changed.
    let good = |s: i64| -> Option<ChainHash> {
        if s == 0 {
            return Some(GENESIS);
        }
        if failing.binary_search(&s).is_ok() {
            return None;
        }
        by_seq.get(&s).and_then(|e| e.hash)
    };
    let mut diagnosed: Vec<Finding> = Vec::new();
    for &seq in &failing {
        let e = by_seq[&seq];
        let Some(stored) = e.hash else {
            diagnosed.push(Finding::RowChanged {
                seq,
                label: e.label.clone(),
            });
            continue;
        };
        let displaced: Vec<ChainHash> = failing
            .iter()
            .filter(|s| (**s - seq).abs() <= MOVE_WINDOW + 1 && **s != seq)
            .filter_map(|s| by_seq[s].hash)
            .collect();
        let links_at = |at: i64| -> bool {
            let bytes = (e.bytes_at)(at);
            good(at - 1)
                .into_iter()
                .chain(displaced.iter().copied())
                .any(|p| link(&p, &bytes) == stored)
        };
        if links_at(seq) {
            continue; // intact: only its predecessor moved
        }
        let lo = (seq - MOVE_WINDOW).max(1);
        match (lo..=seq + MOVE_WINDOW).find(|&at| at != seq && links_at(at)) {
            Some(belongs_at) => diagnosed.push(Finding::RowMoved {
                seq,
                belongs_at,
                label: e.label.clone(),
            }),
            None => diagnosed.push(Finding::RowChanged {
                seq,
                label: e.label.clone(),
            }),
        }
    }
    report.findings.extend(diagnosed);

    if let Some(key) = audit_key {
        check_checkpoints(&mut report, &by_seq, checkpoints, key);
    } else {
        report.rows_after_checkpoint = report.chained_rows as i64;
    }
    report.findings.sort_by_key(order);
    report
}

fn check_checkpoints(
    report: &mut Report,
    by_seq: &BTreeMap<i64, &Entry>,
    checkpoints: &[Checkpoint],
    key: &RsaPublicKey,
) {
    let mut numbers: BTreeMap<i64, &Checkpoint> = BTreeMap::new();
    let mut newest: Option<&Checkpoint> = None;
    let mut seen: HashMap<i64, &str> = HashMap::new();
    for cp in checkpoints {
        if let Err(error) = cp.verify(key) {
            report.findings.push(Finding::CheckpointForged { error });
            continue;
        }
        // The same checkpoint in two copies (the store's and the service log's) counts once.
        if seen.insert(cp.number, cp.signature.as_str()).is_some() {
            continue;
        }
        report.valid_checkpoints += 1;
        numbers.insert(cp.number, cp);
        if newest.is_none_or(|n| cp.seq > n.seq) {
            newest = Some(cp);
        }
        // A checkpoint past the newest row is a truncation (below); one inside a gap names
        // a deletion that is already a finding.
        if let Some(e) = by_seq.get(&cp.seq)
            && cp.chain_hash().ok() != e.hash
        {
            report.findings.push(Finding::CheckpointMismatch {
                checkpoint: cp.number,
                seq: cp.seq,
            });
        }
    }
    let mut expected = 1;
    for &n in numbers.keys() {
        if n > expected {
            report.findings.push(Finding::CheckpointMissing {
                first: expected,
                last: n - 1,
            });
        }
        expected = n + 1;
    }
    if let Some(cp) = newest {
        report.newest_checkpoint_seq = Some(cp.seq);
        if cp.seq > report.last_seq {
            report.findings.push(Finding::Truncated {
                log_ends_at: report.last_seq,
                checkpoint_seq: cp.seq,
                checkpoint: cp.number,
            });
        }
        report.rows_after_checkpoint = by_seq.range(cp.seq + 1..).count() as i64;
    } else {
        report.rows_after_checkpoint = report.chained_rows as i64;
    }
}

/// Findings in chain order (then checkpoint findings).
fn order(f: &Finding) -> (i64, i64) {
    match f {
        Finding::RowChanged { seq, .. }
        | Finding::RowMoved { seq, .. }
        | Finding::DuplicateSeq { seq } => (*seq, 0),
        Finding::RowsDeleted { first, .. } => (*first, 0),
        Finding::Truncated { log_ends_at, .. } => (*log_ends_at, 1),
        Finding::CheckpointMismatch { seq, .. } => (*seq, 2),
        Finding::CheckpointForged { .. } => (i64::MAX, 0),
        Finding::CheckpointMissing { first, .. } => (i64::MAX, *first),
        Finding::SerialRejected { seq, .. } => (seq.unwrap_or(0), 3),
    }
}

#[cfg(test)]
mod tests;
