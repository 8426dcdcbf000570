//! [`HsmConfig`]: where the HSM layer finds its tokens and how it uses them, built by hand
//! (tests, benches) or from the process [`Config`].

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::config::Config;

use super::{DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_CALL_TIMEOUT};

/// Where the HSM layer finds its tokens and how it uses them.
#[derive(Clone, Debug)]
pub struct HsmConfig {
    /// The PKCS#11 module used by tokens that do not name their own.
    pub module: PathBuf,
    /// The tokens to sign with; all should hold the same signing keys. The first is where
    /// keys are generated.
    pub tokens: Vec<TokenSpec>,
    /// Pooled sessions per token (bounded by the token's maximum session count).
    pub sessions: usize,
    /// Longest a key generation may take.
    pub keygen_timeout: Duration,
    /// Longest a request waits for a free session before failing with
    /// [`HsmError::Timeout`](super::HsmError::Timeout).
    pub acquire_timeout: Duration,
    /// Longest one blocking PKCS#11 call may take (module initialization, slot lookup,
    /// opening a session, login, key look-ups, one batch of signatures). Past it the call is
    /// abandoned and the token recovered on fresh instances. Not used for key generation.
    pub call_timeout: Duration,
}

/// One token: its label, its user PIN, and optionally its own module.
#[derive(Clone, Debug)]
pub struct TokenSpec {
    /// The token label (CKA_LABEL of the token, trailing blanks ignored).
    pub label: String,
    /// The user PIN; never logged.
    pub pin: SecretString,
    /// The module holding this token, when it is not [`HsmConfig::module`].
    pub module: Option<PathBuf>,
}

impl TokenSpec {
    /// A token on the default module.
    pub fn new(label: impl Into<String>, pin: SecretString) -> Self {
        TokenSpec {
            label: label.into(),
            pin,
            module: None,
        }
    }
}

impl HsmConfig {
    /// One token on one module, with default sizes.
    pub fn new(module: impl Into<PathBuf>, label: impl Into<String>, pin: SecretString) -> Self {
        HsmConfig {
            module: module.into(),
            tokens: vec![TokenSpec::new(label, pin)],
            sessions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            keygen_timeout: Duration::from_secs(300),
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }
}

impl From<&Config> for HsmConfig {
    fn from(c: &Config) -> Self {
        let mut tokens = vec![TokenSpec::new(c.token_label.clone(), c.token_pin.clone())];
        tokens.extend(c.more_tokens.iter().enumerate().map(|(i, t)| TokenSpec {
            label: t.label.clone(),
            pin: c.more_token_pin(i),
            module: t.module.clone(),
        }));
        HsmConfig {
            module: c.pkcs11_module.clone(),
            tokens,
            sessions: c.hsm_sessions,
            keygen_timeout: c.keygen_timeout,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            call_timeout: c.hsm_call_timeout,
        }
    }
}
