//! What the admin plane needs from the HSM and the assertion codec, in one place: generating a
//! key on the token, building the self-signed `account-key-request`, and verifying pushed
//! account/account-key assertions against the trust database.
//!
//! [`Backend`] is the seam; [`HsmBackend`] is the real one, [`Unavailable`] the stand-in when
//! the HSM cannot be opened.

use futures_util::future::BoxFuture;

use std::sync::Arc;

use crate::keyfile::RsaPrivateKey;
use crate::store::{NewAccountAssertion, SigningKey};
use crate::wiring::LazyHsm;

/// A key the HSM generated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedKey {
    /// Its snapd id (SHA3-384, unpadded base64url).
    pub sha3_384: String,
    /// Its public key as snapd encodes it.
    pub public_key: String,
}

/// Why an HSM operation of the admin plane failed. Messages name keys and reasons, never a
/// PIN.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No HSM to ask: the reason it is not there (the stand-in backend, or a test double).
    #[error("{0}")]
    Unavailable(String),
    /// The server's HSM has not opened (yet); its background retry may still open it.
    #[error("HSM not open: {0}")]
    NotOpen(String),
    /// The HSM refused or failed.
    #[error(transparent)]
    Hsm(#[from] crate::hsm::HsmError),
    /// The key has no id yet (still pending or failed).
    #[error("key {0:?} has no id yet")]
    NoKeyId(String),
    /// The key is in the store but not on the token.
    #[error("key {0} is not on the token")]
    NotOnToken(String),
    /// The `account-key-request` cannot be built.
    #[error(transparent)]
    Build(#[from] crate::assertion::codec::BuildError),
    /// The clock is past what an OpenPGP signature can say.
    #[error("the clock is outside the OpenPGP time range")]
    ClockOutOfRange,
    /// The HSM answered a signing call with no signature.
    #[error("the HSM returned no signature")]
    NoSignature,
    /// The assembled assertion is not UTF-8.
    #[error("the assembled assertion is not text")]
    NotText(#[source] std::string::FromUtf8Error),
}

/// A refused assertion in a pushed stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// The HSM and codec operations of the admin plane.
pub trait Backend: Send + Sync + 'static {
    /// Generates an RSA-4096 key named `name` on the token.
    fn generate_key<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<GeneratedKey, BackendError>>;

    /// Imports `key` onto the token as the signing key `name`. Refused with
    /// [`crate::hsm::HsmError::KeyExists`] when the token holds its id or name. A backend
    /// without a token cannot.
    fn import_key<'a>(
        &'a self,
        _name: &'a str,
        _key: Arc<RsaPrivateKey>,
    ) -> BoxFuture<'a, Result<GeneratedKey, BackendError>> {
        Box::pin(async {
            Err(BackendError::Unavailable(
                "this backend cannot import keys".into(),
            ))
        })
    }

    /// Removes the key `key_id` from the token again (an import the store could not
    /// record).
    fn delete_key<'a>(&'a self, _key_id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async {
            Err(BackendError::Unavailable(
                "this backend cannot delete keys".into(),
            ))
        })
    }

    /// The `account-key-request` for `key` (of brand `key.brand_id`), signed by the key
    /// itself, as assertion text.
    fn account_key_request<'a>(
        &'a self,
        key: &'a SigningKey,
    ) -> BoxFuture<'a, Result<String, BackendError>>;

    /// Decodes a stream of `account` / `account-key` assertions and checks each against the
    /// trust database, the assertions `known` from earlier pushes, and the others in the
    /// stream; the first one that does not verify refuses the whole push.
    fn verify_account_assertions(
        &self,
        stream: &[u8],
        known: &[String],
    ) -> Result<Vec<NewAccountAssertion>, Refusal>;

    /// Whether the HSM can sign (for `/readyz`).
    fn hsm_healthy(&self) -> bool;

    /// Each token's health (the dashboard's sessions column); empty without an HSM.
    fn hsm_tokens(&self) -> Vec<crate::hsm::TokenHealth> {
        Vec::new()
    }

    /// Signs `content` (canonical content from the codec) with the key `key_id` on the
    /// token, the signature made at `created` (unix seconds), and returns the encoded
    /// assertion. A backend without a token cannot.
    fn sign_content<'a>(
        &'a self,
        _key_id: &'a str,
        _content: &'a [u8],
        _created: u32,
    ) -> BoxFuture<'a, Result<Vec<u8>, BackendError>> {
        Box::pin(async {
            Err(BackendError::Unavailable(
                "this backend cannot sign assertions".into(),
            ))
        })
    }

    /// Checks a signed assertion as a device would (`Database.Check`) against the trusted
    /// roots plus the account and account-key assertions `known` from pushes, at `now`.
    fn check_signed(
        &self,
        _encoded: &[u8],
        _known: &[String],
        _now: time::OffsetDateTime,
    ) -> Result<crate::assertion::Assertion, Refusal> {
        Err(Refusal("this backend cannot check assertions".into()))
    }
}

/// The backend when no HSM is available: every HSM operation fails with one clear reason.
#[derive(Clone, Debug)]
pub struct Unavailable(pub String);

impl Unavailable {
    fn error(&self) -> BackendError {
        BackendError::Unavailable(self.0.clone())
    }
}

impl Backend for Unavailable {
    fn import_key<'a>(
        &'a self,
        _name: &'a str,
        _key: Arc<RsaPrivateKey>,
    ) -> BoxFuture<'a, Result<GeneratedKey, BackendError>> {
        Box::pin(async move { Err(self.error()) })
    }

    fn delete_key<'a>(&'a self, _key_id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move { Err(self.error()) })
    }

    fn generate_key<'a>(
        &'a self,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<GeneratedKey, BackendError>> {
        Box::pin(async move { Err(self.error()) })
    }

    fn account_key_request<'a>(
        &'a self,
        _key: &'a SigningKey,
    ) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(async move { Err(self.error()) })
    }

    fn verify_account_assertions(
        &self,
        _stream: &[u8],
        _known: &[String],
    ) -> Result<Vec<NewAccountAssertion>, Refusal> {
        Err(Refusal(self.0.clone()))
    }

    fn hsm_healthy(&self) -> bool {
        false
    }

    fn sign_content<'a>(
        &'a self,
        _key_id: &'a str,
        _content: &'a [u8],
        _created: u32,
    ) -> BoxFuture<'a, Result<Vec<u8>, BackendError>> {
        Box::pin(async move { Err(self.error()) })
    }
}

/// The real backend: keys on the PKCS#11 token, assertions through the project's codec,
/// pushed assertions checked against the trust database.
///
/// It holds the same [`LazyHsm`] as the device plane, so an HSM that could not be opened at
/// start-up serves key generation as soon as the slot's background retry opens it (no
/// restart); until then HSM operations fail with the reason, and pushes, which need only
/// the trust database, still work.
#[derive(Clone, Debug)]
pub struct HsmBackend {
    slot: Arc<LazyHsm>,
    trust: crate::trust::TrustDb,
}

impl HsmBackend {
    /// A backend over the server's HSM slot and the configured trusted roots.
    pub fn new(slot: Arc<LazyHsm>, trust: crate::trust::TrustDb) -> Self {
        HsmBackend { slot, trust }
    }

    fn hsm(&self) -> Result<&crate::hsm::Hsm, BackendError> {
        self.slot
            .get()
            .ok_or_else(|| BackendError::NotOpen(self.slot.why()))
    }
}

/// Checks `pushed` against `trust` plus the assertions `known` from earlier pushes (accounts
/// first, then keys until no progress, as keys may depend on each other); the first one that
/// cannot be admitted is named in the refusal.
pub fn verify_pushed(
    trust: &crate::trust::TrustDb,
    known: &[String],
    pushed: &[u8],
    now: time::OffsetDateTime,
) -> Result<Vec<NewAccountAssertion>, Refusal> {
    use crate::assertion::{AssertionType, decode_stream};
    use crate::store::AssertionKind;
    use crate::trust::describe;

    let assertions = decode_stream(pushed)
        .map_err(|e| Refusal(format!("cannot decode the pushed assertions: {e}")))?;
    for a in &assertions {
        if !matches!(a.kind(), AssertionType::Account | AssertionType::AccountKey) {
            return Err(Refusal(format!(
                "refused {}: only account and account-key assertions can be pushed",
                describe(a)
            )));
        }
    }
    // What earlier pushes admitted counts as known (each was verified when pushed).
    let (_, left) = with_known(trust, known, now).admitting(assertions.iter().cloned(), now);
    if let Some((a, e)) = left.first() {
        return Err(Refusal(format!("refused {}: {e}", describe(a))));
    }
    Ok(assertions
        .iter()
        .map(|a| {
            let (kind, pk) = match a.kind() {
                AssertionType::Account => (AssertionKind::Account, "account-id"),
                _ => (AssertionKind::AccountKey, "public-key-sha3-384"),
            };
            NewAccountAssertion {
                kind,
                primary_key: a.header_str(pk).unwrap_or_default().to_string(),
                account_id: a.header_str("account-id").unwrap_or_default().to_string(),
                revision: i32::try_from(a.revision()).unwrap_or(i32::MAX),
                text: String::from_utf8_lossy(&a.encode()).into_owned(),
            }
        })
        .collect())
}

impl Backend for HsmBackend {
    fn import_key<'a>(
        &'a self,
        name: &'a str,
        key: Arc<RsaPrivateKey>,
    ) -> BoxFuture<'a, Result<GeneratedKey, BackendError>> {
        Box::pin(async move {
            let info = self.hsm()?.import_key(name, key).await?;
            Ok(GeneratedKey {
                sha3_384: info.key_id,
                public_key: info.public.encode(),
            })
        })
    }

    fn delete_key<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.hsm()?.delete_key(key_id).await?;
            Ok(())
        })
    }

    fn generate_key<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<GeneratedKey, BackendError>> {
        Box::pin(async move {
            let info = self.hsm()?.generate_key(name).await?;
            Ok(GeneratedKey {
                sha3_384: info.key_id,
                public_key: info.public.encode(),
            })
        })
    }

    fn account_key_request<'a>(
        &'a self,
        key: &'a SigningKey,
    ) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(async move {
            use crate::assertion::{AccountKeyRequestBuilder, assemble_encoded, signing_input};
            let id = key
                .sha3_384
                .as_deref()
                .ok_or_else(|| BackendError::NoKeyId(key.name.clone()))?;
            let hsm = self.hsm()?;
            let info = hsm
                .find_key(id)
                .await?
                .ok_or_else(|| BackendError::NotOnToken(id.to_string()))?;
            let now = time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .expect("0 is a valid nanosecond");
            let content = AccountKeyRequestBuilder {
                account_id: key.brand_id.clone(),
                name: key.name.clone(),
                since: now,
                until: None,
                public_key: info.public,
            }
            .content()?;
            let created =
                u32::try_from(now.unix_timestamp()).map_err(|_| BackendError::ClockOutOfRange)?;
            let input = signing_input(&content, created);
            let sigs = hsm.sign(id, &[*input.digest_info()]).await?;
            let sig = sigs.first().ok_or(BackendError::NoSignature)?;
            let encoded = assemble_encoded(&content, &input.encode_signature(sig));
            String::from_utf8(encoded).map_err(BackendError::NotText)
        })
    }

    fn verify_account_assertions(
        &self,
        stream: &[u8],
        known: &[String],
    ) -> Result<Vec<NewAccountAssertion>, Refusal> {
        verify_pushed(&self.trust, known, stream, time::OffsetDateTime::now_utc())
    }

    fn hsm_healthy(&self) -> bool {
        self.slot.get().is_some_and(|hsm| hsm.health().is_up())
    }

    fn hsm_tokens(&self) -> Vec<crate::hsm::TokenHealth> {
        self.slot
            .get()
            .map(|hsm| hsm.health().tokens)
            .unwrap_or_default()
    }

    fn sign_content<'a>(
        &'a self,
        key_id: &'a str,
        content: &'a [u8],
        created: u32,
    ) -> BoxFuture<'a, Result<Vec<u8>, BackendError>> {
        Box::pin(async move {
            use crate::assertion::{assemble_encoded, signing_input};
            let input = signing_input(content, created);
            let sigs = self.hsm()?.sign(key_id, &[*input.digest_info()]).await?;
            let sig = sigs.first().ok_or(BackendError::NoSignature)?;
            Ok(assemble_encoded(content, &input.encode_signature(sig)))
        })
    }

    fn check_signed(
        &self,
        encoded: &[u8],
        known: &[String],
        now: time::OffsetDateTime,
    ) -> Result<crate::assertion::Assertion, Refusal> {
        check_signed(&self.trust, known, encoded, now)
    }
}

/// `trust` with the pushed assertions `known` (texts of account and account-key assertions)
/// admitted as far as they go.
fn with_known(
    trust: &crate::trust::TrustDb,
    known: &[String],
    now: time::OffsetDateTime,
) -> crate::trust::TrustDb {
    let pushed = known
        .iter()
        .filter_map(|t| crate::assertion::decode_stream(t.as_bytes()).ok())
        .flatten();
    trust.admitting(pushed, now).0
}

/// Decodes `encoded` and checks it against `trust` plus the assertions `known` from pushes
/// at `now`, as a device's `Database.Check` would.
pub fn check_signed(
    trust: &crate::trust::TrustDb,
    known: &[String],
    encoded: &[u8],
    now: time::OffsetDateTime,
) -> Result<crate::assertion::Assertion, Refusal> {
    use crate::assertion::decode;
    let a = decode(encoded).map_err(|e| Refusal(format!("cannot decode: {e}")))?;
    let db = with_known(trust, known, now);
    db.check(&a, now).map_err(|e| Refusal(e.to_string()))?;
    Ok(a)
}
