//! What the admin plane needs from the HSM and the assertion codec, in one place: generating a
//! key on the token, building the self-signed `account-key-request`, and verifying pushed
//! account/account-key assertions against the trust database.
//!
//! [`Backend`] is the seam; [`Unavailable`] is the stand-in used when no HSM is configured.

use futures_util::future::BoxFuture;

use crate::store::{NewAccountAssertion, SigningKey};

/// A key the HSM generated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedKey {
    /// Its snapd id (SHA3-384, unpadded base64url).
    pub sha3_384: String,
    /// Its public key as snapd encodes it.
    pub public_key: String,
}

/// A refused assertion in a pushed stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// The HSM and codec operations of the admin plane.
pub trait Backend: Send + Sync + 'static {
    /// Generates an RSA-4096 key named `name` on the token.
    fn generate_key<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<GeneratedKey, String>>;

    /// The `account-key-request` for `key` (of brand `key.brand_id`), signed by the key
    /// itself, as assertion text.
    fn account_key_request<'a>(
        &'a self,
        key: &'a SigningKey,
    ) -> BoxFuture<'a, Result<String, String>>;

    /// Decodes a stream of `account` / `account-key` assertions and checks each against the
    /// trust database (and the ones before it in the stream); the first one that does not
    /// verify refuses the whole push.
    fn verify_account_assertions(&self, stream: &[u8])
    -> Result<Vec<NewAccountAssertion>, Refusal>;

    /// Whether the HSM can sign (for `/readyz`).
    fn hsm_healthy(&self) -> bool;
}

/// The backend when no HSM is available: every HSM operation fails with one clear reason.
#[derive(Clone, Debug)]
pub struct Unavailable(pub String);

impl Backend for Unavailable {
    fn generate_key<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<GeneratedKey, String>> {
        Box::pin(async move { Err(self.0.clone()) })
    }

    fn account_key_request<'a>(
        &'a self,
        _key: &'a SigningKey,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move { Err(self.0.clone()) })
    }

    fn verify_account_assertions(
        &self,
        _stream: &[u8],
    ) -> Result<Vec<NewAccountAssertion>, Refusal> {
        Err(Refusal(self.0.clone()))
    }

    fn hsm_healthy(&self) -> bool {
        false
    }
}
