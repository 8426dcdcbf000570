//! Device business logic, independent of HTTP: request-ids and serial issuance.
//!
//! [`Registration::issue`] runs the checks in the order of issue 6, each failure a distinct
//! [`RegError`] with its HTTP status and code, then builds the serial, pre-hashes it, has the
//! signer sign it, verifies the result in software and records it in the signing log (group
//! commit) before returning it. Nothing here reads a socket; `device_api` is the HTTP edge.

pub mod catalog;
pub mod log;
pub mod remodel;
pub mod request_id;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

pub use catalog::{
    AssertionKind, DeviceCatalog, DeviceModel, DuplicatePolicy, KeyRefusal, SerialKey, SerialScheme,
};
pub use log::{GroupCommit, LogError, SigningLog};
pub use remodel::{RemodelError, RemodelRequest};
pub use request_id::{RequestIdError, RequestIds};

use crate::assertion::{
    self, AssertionType, Model, SerialBuilder, SerialRequest, assemble_encoded, signing_input,
};
use crate::domain::{Issuance, LoggedIssuance, RecordOutcome};
use crate::signer::{SignError, Signer};

/// The media type of assertions and assertion streams.
pub const ASSERTION_MEDIA_TYPE: &str = "application/x.ubuntu.assertion";

/// The smallest device key accepted, in bits (snapd generates 4096-bit keys).
pub const MIN_DEVICE_KEY_BITS: usize = 4096;

/// Why a serial was not issued. Each variant has its own status and code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegError {
    /// No `api-key` header (401).
    #[error("missing api-key header")]
    MissingApiKey,
    /// The API key matches no model (403).
    #[error("invalid api-key")]
    WrongApiKey,
    /// The body is not `application/x.ubuntu.assertion` (415).
    #[error("Content-Type must be application/x.ubuntu.assertion")]
    UnsupportedMediaType,
    /// The body is larger than the cap (413).
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// The stream is not serial-request, model[, serial] (400).
    #[error("invalid assertion stream: {0}")]
    BadStream(String),
    /// The serial-request's self-signature does not verify (400).
    #[error("serial-request signature does not verify: {0}")]
    BadSignature(String),
    /// The device key is too small (400).
    #[error("device key is {0} bits; at least 4096 are required")]
    WeakDeviceKey(usize),
    /// The request-id is not ours or is malformed (400).
    #[error("invalid request-id")]
    BadRequestId,
    /// The request-id expired (400).
    #[error("request-id expired; ask for a new one")]
    ExpiredRequestId,
    /// No such model (404).
    #[error("unknown model {brand}/{model}")]
    UnknownModel {
        /// The brand asked for.
        brand: String,
        /// The model asked for.
        model: String,
    },
    /// The model is disabled or does not belong to this API key (403).
    #[error("model {0} is not enabled for this api-key")]
    ModelNotAllowed(String),
    /// The model assertion does not verify or does not match the request (400).
    #[error("invalid model assertion: {0}")]
    BadModel(String),
    /// No serial may be signed for this model: no policy, or its key is out of scope (409).
    #[error("{0}")]
    NoSigningPolicy(String),
    /// The policy's key is not available right now (503).
    #[error("{0}")]
    KeyUnavailable(String),
    /// The constraints of the key's account-key do not admit this serial (409): it is never
    /// signed, since a device with a current snapd would refuse it.
    #[error("{0}")]
    KeyRoleRefused(String),
    /// The model requires a proposed serial and none was sent (400).
    #[error("model {0} requires a proposed serial")]
    SerialRequired(String),
    /// The proposed serial (or body) cannot go into a serial assertion (400).
    #[error("cannot build serial: {0}")]
    InvalidSerial(String),
    /// The request-id already issued a serial for another request: to another device key,
    /// or for another model or proposed serial (409).
    #[error("request-id already used for another serial request; ask for a new one")]
    RequestIdUsed,
    /// The serial was already issued to another device key (409).
    #[error("serial {0:?} already issued to another device")]
    SerialTaken(String),
    /// The signer refused or failed (503; the reason says why).
    #[error("{0}")]
    Signing(SignError),
    /// The signing log (Postgres) is unavailable: nothing issued (503).
    #[error("signing log unavailable; retry later")]
    LogUnavailable(#[source] LogError),
    /// The signing log failed a moment ago (a commit, a look-up or the watchdog's probe) and
    /// has not answered since: refused before signing (503, `database-unavailable`, as
    /// `LogUnavailable`).
    #[error("signing log unavailable: Postgres does not answer; retry later")]
    LogDown,
    /// A signature from the HSM did not verify (503: the device retries).
    #[error("signature check failed; retry later")]
    SignatureCheck(String),
    /// A remodel re-registration was refused (its own status and code).
    #[error(transparent)]
    Remodel(RemodelError),
}

impl RegError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        use RegError::*;
        match self {
            MissingApiKey => 401,
            WrongApiKey | ModelNotAllowed(_) => 403,
            UnknownModel { .. } => 404,
            UnsupportedMediaType => 415,
            TooLarge(_) => 413,
            BadStream(_) | BadSignature(_) | WeakDeviceKey(_) | BadRequestId | ExpiredRequestId
            | BadModel(_) | SerialRequired(_) | InvalidSerial(_) => 400,
            NoSigningPolicy(_) | KeyRoleRefused(_) | RequestIdUsed | SerialTaken(_) => 409,
            KeyUnavailable(_) | Signing(_) | LogUnavailable(_) | LogDown | SignatureCheck(_) => 503,
            Remodel(e) => e.status(),
        }
    }

    /// The machine-readable code in `error_list[0].code` (also the metrics reason).
    pub fn code(&self) -> &'static str {
        use RegError::*;
        match self {
            MissingApiKey => "api-key-missing",
            WrongApiKey => "api-key-invalid",
            UnsupportedMediaType => "unsupported-media-type",
            TooLarge(_) => "too-large",
            BadStream(_) => "invalid-stream",
            BadSignature(_) => "invalid-request-signature",
            WeakDeviceKey(_) => "device-key-too-weak",
            BadRequestId => "invalid-request-id",
            ExpiredRequestId => "request-id-expired",
            UnknownModel { .. } => "unknown-model",
            ModelNotAllowed(_) => "model-not-allowed",
            BadModel(_) => "invalid-model",
            NoSigningPolicy(_) => "no-signing-policy",
            KeyUnavailable(_) => "signing-key-unavailable",
            KeyRoleRefused(_) => "key-role-refused",
            SerialRequired(_) => "serial-required",
            InvalidSerial(_) => "invalid-serial",
            RequestIdUsed => "request-id-used",
            SerialTaken(_) => "duplicate-serial",
            Signing(e) => e.code(),
            LogUnavailable(_) | LogDown => "database-unavailable",
            SignatureCheck(_) => "signature-check-failed",
            Remodel(e) => e.code(),
        }
    }

    /// Whether the signer shed this request as configured ([`SignError::is_load_shed`]).
    pub fn is_load_shed(&self) -> bool {
        matches!(self, RegError::Signing(e) if e.is_load_shed())
    }

    /// `Retry-After` for 503 answers.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegError::Signing(e) => Some(e.retry_after().unwrap_or(Duration::from_secs(1))),
            e if e.status() == 503 => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

impl From<SignError> for RegError {
    fn from(e: SignError) -> Self {
        RegError::Signing(e)
    }
}

impl From<LogError> for RegError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Down => RegError::LogDown,
            e => RegError::LogUnavailable(e),
        }
    }
}

/// A serial to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The encoded serial assertion.
    pub serial: String,
    /// The signing key's account-key and its account, when held (may be empty).
    pub chain: Vec<String>,
    /// The model (for metrics).
    pub model: String,
    /// Whether this is an earlier serial answered again (a replay).
    pub replay: bool,
}

/// Device registration: request-ids and serial issuance.
pub struct Registration {
    request_ids: Arc<RequestIds>,
    catalog: Arc<dyn DeviceCatalog>,
    signer: Signer,
    log: GroupCommit,
    instance: String,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// Whether a Content-Type header names the assertion media type (parameters ignored).
pub fn is_assertion_media_type(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(ASSERTION_MEDIA_TYPE))
}

/// The serial the device proposes: the `serial` header, else a `serial:` line of the body.
pub fn proposed_serial(req: &SerialRequest) -> Option<String> {
    if let Some(s) = req.serial() {
        return Some(s.to_owned());
    }
    let body = std::str::from_utf8(req.body()).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("serial:"))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

impl Registration {
    /// Registration over its parts. `instance` names this process in the signing log.
    pub fn new(
        request_ids: Arc<RequestIds>,
        catalog: Arc<dyn DeviceCatalog>,
        signer: Signer,
        log: GroupCommit,
        instance: impl Into<String>,
    ) -> Self {
        Self {
            request_ids,
            catalog,
            signer,
            log,
            instance: instance.into(),
        }
    }

    /// The signer.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<dyn DeviceCatalog> {
        &self.catalog
    }

    /// A fresh request-id.
    pub fn request_id(&self) -> String {
        self.request_ids.issue()
    }

    /// Check 1: the `api-key` header is present (401) and belongs to some model (403),
    /// compared in constant time.
    pub fn check_api_key<'a>(&self, api_key: Option<&'a str>) -> Result<&'a str, RegError> {
        let key = api_key
            .filter(|k| !k.is_empty())
            .ok_or(RegError::MissingApiKey)?;
        if !self.catalog.api_key_known(key) {
            return Err(RegError::WrongApiKey);
        }
        Ok(key)
    }

    /// Check 2: the body is an assertion stream (415).
    pub fn check_content_type(content_type: Option<&str>) -> Result<(), RegError> {
        if is_assertion_media_type(content_type) {
            Ok(())
        } else {
            Err(RegError::UnsupportedMediaType)
        }
    }

    /// The remaining checks, then issuance. `api_key` passed [`Self::check_api_key`] and the
    /// body was read under the size cap.
    pub async fn issue(&self, api_key: &str, body: &[u8]) -> Result<Issued, RegError> {
        let mut model_label = "unknown".to_owned();
        let result = self.issue_inner(api_key, body, &mut model_label).await;
        match &result {
            Ok(issued) => {
                let kind = if issued.replay { "replay" } else { "new" };
                metrics::counter!("serials_issued_total", "model" => model_label, "kind" => kind)
                    .increment(1);
            }
            Err(e) => {
                metrics::counter!("serials_refused_total", "model" => model_label, "reason" => e.code())
                    .increment(1);
            }
        }
        result
    }

    async fn issue_inner(
        &self,
        api_key: &str,
        body: &[u8],
        model_label: &mut String,
    ) -> Result<Issued, RegError> {
        // Overload is refused before any CPU goes into decoding and verifying.
        self.signer.check_admission()?;
        // Stream shape: serial-request, model, and for a remodel the old serial.
        let stream =
            assertion::decode_stream(body).map_err(|e| RegError::BadStream(e.to_string()))?;
        let kinds: Vec<AssertionType> = stream.iter().map(|a| a.kind()).collect();
        let shape_ok = matches!(
            kinds.as_slice(),
            [AssertionType::SerialRequest, AssertionType::Model]
                | [
                    AssertionType::SerialRequest,
                    AssertionType::Model,
                    AssertionType::Serial
                ]
        );
        if !shape_ok {
            let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
            return Err(RegError::BadStream(format!(
                "expected serial-request, model[, serial]; got [{}]",
                names.join(", ")
            )));
        }
        let mut it = stream.into_iter();
        let req = SerialRequest::try_from(it.next().expect("shape checked"))
            .map_err(|e| RegError::BadStream(e.to_string()))?;
        let model_a = Model::try_from(it.next().expect("shape checked"))
            .map_err(|e| RegError::BadStream(e.to_string()))?;
        let remodel = RemodelRequest::from_stream(&req, it.next())?;

        // Self-signature, device key size, request-id.
        req.verify_self_signature()
            .map_err(|e| RegError::BadSignature(e.to_string()))?;
        let bits = req.device_key().bits();
        if bits < MIN_DEVICE_KEY_BITS {
            return Err(RegError::WeakDeviceKey(bits));
        }
        self.request_ids
            .verify(req.request_id())
            .map_err(|e| match e {
                RequestIdError::Expired => RegError::ExpiredRequestId,
                _ => RegError::BadRequestId,
            })?;

        // The model: known, enabled, and this API key's.
        let model = self
            .catalog
            .model(req.brand_id(), req.model())
            .ok_or_else(|| RegError::UnknownModel {
                brand: req.brand_id().to_owned(),
                model: req.model().to_owned(),
            })?;
        *model_label = model.name.clone();
        if !self.api_key_matches(remodel.as_ref(), &model, api_key) || !model.enabled {
            return Err(RegError::ModelNotAllowed(model.name.clone()));
        }

        // The model assertion: brand and model match, signed by the brand, trusted.
        if model_a.brand_id() != req.brand_id() || model_a.model() != req.model() {
            return Err(RegError::BadModel(format!(
                "model assertion is {}/{}, serial-request is for {}/{}",
                model_a.brand_id(),
                model_a.model(),
                req.brand_id(),
                req.model()
            )));
        }
        let now = now_utc();
        self.catalog
            .trust()
            .check_model(&model_a, now)
            .map_err(|e| RegError::BadModel(e.to_string()))?;
        let original = match &remodel {
            Some(r) => Some(self.check_remodel(r, &req, &model, now).await?),
            None => None,
        };

        // The policy's key.
        let key = self.catalog.serial_key(&model).map_err(|e| match e {
            KeyRefusal::NotAllowed(m) => RegError::NoSigningPolicy(m),
            KeyRefusal::Unavailable(m) => RegError::KeyUnavailable(m),
            KeyRefusal::RoleRefused(m) => RegError::KeyRoleRefused(m),
        })?;

        // A replay of an answered request (same request-id) is recognised when its row is
        // recorded: the log's unique request-id makes it a replay (same device key: the
        // earlier serial is answered, the new one never leaves) or a refusal (another device
        // key). Replays are rare, so the common path makes no look-up before signing.
        let device_key_id = req.device_key().key_id();

        // Postgres failed a moment ago and has not answered since: 503 now, before a
        // signature is spent on a row that cannot be written (a probe lifts it).
        self.log.check_up()?;
        self.signer
            .check_rate(&model_key(&model), model.rate_limit)?;

        // The serial number and its revision.
        let proposed = proposed_serial(&req);
        let (serial, mut revision) = match (&proposed, &model.serial_scheme) {
            (Some(s), _) => (s.clone(), 0),
            (None, SerialScheme::Uuid) => (uuid::Uuid::new_v4().to_string(), 0),
            (None, SerialScheme::PrefixCounter(prefix)) => {
                let n = self.log.next_counter(model.id).await?;
                (format!("{prefix}{n}"), 0)
            }
            (None, SerialScheme::RequireProposed) => {
                return Err(RegError::SerialRequired(model.name.clone()));
            }
        };
        if proposed.is_some()
            && let Some(prior) = self
                .log
                .latest(&model.brand_id, &model.name, &serial)
                .await?
        {
            if prior.issuance.device_key_id == device_key_id {
                return self.replay_or_refuse(prior, &device_key_id, &model, proposed.as_deref());
            }
            match model.duplicate_policy {
                DuplicatePolicy::Refuse => return Err(RegError::SerialTaken(serial)),
                DuplicatePolicy::Reissue => revision = prior.issuance.revision + 1,
            }
        }

        // Build, pre-hash, sign, verify.
        let mut builder = SerialBuilder::from_request(&req, &serial, now);
        builder.authority_id = key.authority_id.clone();
        builder.revision = revision;
        let content = builder
            .content(&key.key_id)
            .map_err(|e| RegError::InvalidSerial(e.to_string()))?;
        // Fail closed: the built serial's headers, exactly as a device will decode them,
        // against the key's constraints (compiled at catalog load), right before signing.
        if let Some(constraints) = &key.constraints {
            check_roles(constraints, &content, &key.key_id)?;
        }
        let created = u32::try_from(now.unix_timestamp()).unwrap_or(u32::MAX);
        let input = signing_input(&content, created);
        // The HSM layer verified the raw signature over this DigestInfo with the key's public
        // half; what is left to prove is that the assembled assertion decodes and carries
        // exactly that signature over exactly this content (one SHA-512, no second RSA).
        let signature = self.signer.sign(&key.key_id, *input.digest_info()).await?;
        let encoded = assemble_encoded(&content, &input.encode_signature(&signature));
        let decoded =
            assertion::decode(&encoded).map_err(|e| RegError::SignatureCheck(e.to_string()))?;
        if decoded.content() != content.as_slice() || decoded.sign_key_id() != key.key_id {
            return Err(RegError::SignatureCheck(
                "the assembled serial does not carry the signed content".into(),
            ));
        }
        assertion::check_encoded_signature(
            decoded.content(),
            decoded.signature(),
            input.digest_info(),
            &signature,
        )
        .map_err(|e| RegError::SignatureCheck(e.to_string()))?;
        let serial_text =
            String::from_utf8(encoded).map_err(|e| RegError::SignatureCheck(e.to_string()))?;

        // Committed before it is answered.
        let outcome = self
            .log
            .record(Issuance {
                brand_id: model.brand_id.clone(),
                model_id: model.id,
                model_name: model.name.clone(),
                serial: serial.clone(),
                revision,
                device_key_id: device_key_id.clone(),
                request_id: req.request_id().to_owned(),
                signing_key_id: key.key_id.clone(),
                instance: self.instance.clone(),
                serial_assertion: serial_text,
                original_serial: original.as_ref().map(|o| o.key.clone()),
                original_serial_id: original.and_then(|o| o.log_id),
            })
            .await?;
        match outcome {
            RecordOutcome::Inserted(logged) => Ok(Issued {
                serial: logged.issuance.serial_assertion,
                chain: self.catalog.key_chain(&key.key_id),
                model: model.name.clone(),
                replay: false,
            }),
            RecordOutcome::Replay(prior) => {
                self.replay_or_refuse(prior, &device_key_id, &model, proposed.as_deref())
            }
            RecordOutcome::RequestIdUsed(_) => Err(RegError::RequestIdUsed),
            RecordOutcome::SerialTaken(_) => Err(RegError::SerialTaken(serial)),
            RecordOutcome::ModelGone => Err(RegError::UnknownModel {
                brand: model.brand_id.clone(),
                model: model.name.clone(),
            }),
        }
    }

    /// An earlier issuance with the same request-id or the same serial: the same device key
    /// gets it again when it asked for the same thing (a replay: same brand and model, and the
    /// same serial when it proposed one); another device key is refused, and so is the same
    /// key reusing a request-id for another model or another proposed serial (answering the
    /// earlier serial would hand it one it did not ask for).
    fn replay_or_refuse(
        &self,
        prior: LoggedIssuance,
        device_key_id: &str,
        model: &DeviceModel,
        proposed: Option<&str>,
    ) -> Result<Issued, RegError> {
        let prior = prior.issuance;
        if prior.device_key_id != device_key_id {
            return Err(RegError::SerialTaken(prior.serial));
        }
        if prior.brand_id != model.brand_id
            || prior.model_name != model.name
            || proposed.is_some_and(|p| p != prior.serial)
        {
            return Err(RegError::RequestIdUsed);
        }
        let chain = assertion::decode(prior.serial_assertion.as_bytes())
            .map(|a| self.catalog.key_chain(a.sign_key_id()))
            .unwrap_or_default();
        Ok(Issued {
            serial: prior.serial_assertion,
            chain,
            model: model.name.clone(),
            replay: true,
        })
    }

    /// A held account or account-key assertion, for `GET /v2/assertions`.
    pub fn held_assertion(&self, kind: AssertionKind, primary_key: &str) -> Option<String> {
        self.catalog.held_assertion(kind, primary_key)
    }
}

/// Whether a key with `constraints` may sign the serial whose signed `content` this is: its
/// header block is parsed as a device's snapd will parse it and matched as snapd's `canSign`
/// does.
fn check_roles(
    constraints: &assertion::Constraints,
    content: &[u8],
    key_id: &str,
) -> Result<(), RegError> {
    let head = content
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(content, |end| &content[..end]);
    let headers = assertion::headers::parse_headers(head)
        .map_err(|e| RegError::InvalidSerial(e.to_string()))?;
    if constraints.may_sign_headers(&headers) {
        Ok(())
    } else {
        Err(RegError::KeyRoleRefused(format!(
            "the signing key {key_id} may not sign this serial: the constraints of its \
             account-key ({constraints}) do not admit it"
        )))
    }
}

fn model_key(model: &DeviceModel) -> String {
    format!("{}/{}", model.brand_id, model.name)
}

/// Now in UTC, whole seconds (what goes into `timestamp`).
fn now_utc() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

#[cfg(test)]
mod tests;
