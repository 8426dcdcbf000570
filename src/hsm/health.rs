//! What [`super::Hsm::health`] reports: per token, whether it is in rotation, its pool, its
//! last error and its counters.

use std::path::PathBuf;
use std::time::Duration;

/// The health of the HSM layer.
#[derive(Clone, Debug)]
pub struct HsmHealth {
    /// One entry per configured token, in configuration order.
    pub tokens: Vec<TokenHealth>,
}

impl HsmHealth {
    /// Whether at least one token can sign.
    pub fn is_up(&self) -> bool {
        self.tokens.iter().any(|t| t.up)
    }
}

/// The health of one token.
#[derive(Clone, Debug)]
pub struct TokenHealth {
    /// The token label.
    pub label: String,
    /// Its module.
    pub module: PathBuf,
    /// Whether it is in rotation.
    pub up: bool,
    /// Whether each pooled session has its own module instance (p11-kit-client).
    pub connection_per_session: bool,
    /// Sessions open in the pool.
    pub sessions: usize,
    /// The pool's size limit.
    pub max_sessions: usize,
    /// Idle sessions.
    pub available: usize,
    /// Requests waiting for a session.
    pub waiting: usize,
    /// The last error seen on this token (kind and step; never secrets).
    pub last_error: Option<String>,
    /// How long it has been down, when down.
    pub down_for: Option<Duration>,
    /// How many times it came back after an outage.
    pub recoveries: u64,
    /// PKCS#11 calls abandoned after the call timeout, since start.
    pub abandoned_calls: u64,
    /// Abandoned calls whose thread is still stuck in the module.
    pub stuck_calls: usize,
    /// Operations (sign batches, lookups) it completed.
    pub served: u64,
}
