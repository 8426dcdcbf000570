//! Remodel re-registration, as snapd 2.57 sends it (`overlord/devicestate/remodel.go`,
//! `reregRemodelContext`): a device registered as one model asks for a serial of another.
//!
//! The serial-request is for the new brand and model and carries `original-brand-id`,
//! `original-model` and `original-serial` (the device's current serial's primary key); the
//! stream is `serial-request, model (the new one), serial (the device's current one)`. The
//! device still uses its original gadget's device-service configuration, so the `api-key`
//! header is the original model's.
//!
//! On top of a first registration's checks (request-id, new model assertion, rate limit, the
//! new model's serial policy), [`Registration`] checks here, each refusal with its own code
//! ([`RemodelError`]): the original serial verifies against the trusted roots and the pushed
//! account-keys (whoever signed it: this vault or a trusted brand); its device key is the
//! request's; its brand, model and serial are the `original-*` headers; and a remodel policy
//! of the catalog allows the move. The serial issued for the new model is logged with the
//! original's primary key and, when this vault issued the original, its signing-log row.

use time::OffsetDateTime;

use super::catalog::ct_eq;
use super::{DeviceModel, RegError, Registration};
use crate::assertion::{Assertion, Serial, SerialRequest};

/// The serial-request headers that make a request a remodel re-registration.
pub const ORIGINAL_HEADERS: [&str; 3] = ["original-brand-id", "original-model", "original-serial"];

/// Why a remodel re-registration was refused. Each variant has its own status and code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemodelError {
    /// The `original-*` headers and the stream's third assertion do not come together: some
    /// header missing or empty, or a current serial without them, or them without it (400).
    #[error("incomplete remodel request: {0}")]
    Incomplete(String),
    /// The original serial does not verify against the trusted roots and pushed account-keys
    /// (400).
    #[error("the original serial does not verify: {0}")]
    OriginalUntrusted(String),
    /// The original serial is another device key's (400).
    #[error("the original serial was issued to another device key")]
    DeviceKeyMismatch,
    /// The original serial's brand, model or serial differ from the `original-*` headers
    /// (400).
    #[error("the original serial does not match the serial-request: {0}")]
    OriginalMismatch(String),
    /// No remodel policy allows this move for this serial (403).
    #[error("no remodel policy allows {from} to re-register as {to}")]
    NotAllowed {
        /// `brand/model/serial` of the original serial.
        from: String,
        /// `brand/model` asked for.
        to: String,
    },
}

impl RemodelError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            RemodelError::NotAllowed { .. } => 403,
            _ => 400,
        }
    }

    /// The machine-readable code (also the metrics reason).
    pub fn code(&self) -> &'static str {
        match self {
            RemodelError::Incomplete(_) => "remodel-request-incomplete",
            RemodelError::OriginalUntrusted(_) => "original-serial-untrusted",
            RemodelError::DeviceKeyMismatch => "original-serial-device-key-mismatch",
            RemodelError::OriginalMismatch(_) => "original-serial-mismatch",
            RemodelError::NotAllowed { .. } => "remodel-not-allowed",
        }
    }
}

impl From<RemodelError> for RegError {
    fn from(e: RemodelError) -> Self {
        RegError::Remodel(e)
    }
}

/// A remodel re-registration as sent: the `original-*` headers and the device's current
/// serial, not checked yet.
#[derive(Debug, Clone)]
pub struct RemodelRequest {
    brand_id: String,
    model: String,
    serial: String,
    original: Serial,
}

/// The serial a re-registered one replaces, for the signing log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalLink {
    /// Its primary key, `brand-id/model/serial`.
    pub key: String,
    /// Its signing-log row, when this vault issued it to this device key.
    pub log_id: Option<i64>,
}

impl RemodelRequest {
    /// The remodel part of a request: `None` for a first registration (no `original-*`
    /// header, no third assertion); refused when the headers and the current serial do not
    /// come together (the stream's shape is already checked: a third assertion is a serial).
    pub fn from_stream(
        req: &SerialRequest,
        third: Option<Assertion>,
    ) -> Result<Option<Self>, RemodelError> {
        let present: Vec<&str> = ORIGINAL_HEADERS
            .iter()
            .copied()
            .filter(|h| req.headers().get(*h).is_some())
            .collect();
        let third = match (present.is_empty(), third) {
            (true, None) => return Ok(None),
            (true, Some(_)) => {
                return Err(RemodelError::Incomplete(
                    "the stream carries a current serial but the serial-request has no \
                     original-brand-id, original-model and original-serial"
                        .into(),
                ));
            }
            (false, None) => {
                return Err(RemodelError::Incomplete(
                    "the serial-request has original-* headers but the stream carries no \
                     current serial after the model"
                        .into(),
                ));
            }
            (false, Some(a)) => a,
        };
        let value = |h: &str| {
            req.header_str(h)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| {
                    RemodelError::Incomplete(format!(
                        "the serial-request's {h} header is missing, empty or not a string"
                    ))
                })
        };
        let (brand_id, model, serial) = (
            value(ORIGINAL_HEADERS[0])?,
            value(ORIGINAL_HEADERS[1])?,
            value(ORIGINAL_HEADERS[2])?,
        );
        let original = Serial::try_from(third)
            .map_err(|e| RemodelError::Incomplete(format!("the current serial: {e}")))?;
        Ok(Some(RemodelRequest {
            brand_id,
            model,
            serial,
            original,
        }))
    }

    /// `brand-id/model/serial` of the original serial, as the headers name it.
    pub fn original_key(&self) -> String {
        format!("{}/{}/{}", self.brand_id, self.model, self.serial)
    }
}

impl Registration {
    /// Whether `api_key` is the one the device must send: on re-registration the original
    /// model's (snapd uses the original gadget's device-service configuration) when this
    /// vault holds that model, else the new model's; on a first registration the model's.
    pub(super) fn api_key_matches(
        &self,
        remodel: Option<&RemodelRequest>,
        model: &DeviceModel,
        api_key: &str,
    ) -> bool {
        match remodel.and_then(|r| self.catalog.model(&r.brand_id, &r.model)) {
            Some(original) => ct_eq(&original.api_key, api_key),
            None => ct_eq(&model.api_key, api_key),
        }
    }

    /// The remodel checks, after the new model assertion verified: the original serial
    /// verifies, is this device key's, is the one the headers name, and a remodel policy
    /// allows the move to `model`. Returns the link the signing log records.
    pub(super) async fn check_remodel(
        &self,
        r: &RemodelRequest,
        req: &SerialRequest,
        model: &DeviceModel,
        now: OffsetDateTime,
    ) -> Result<OriginalLink, RegError> {
        let original = &r.original;
        self.catalog
            .trust()
            .check(original, now)
            .map_err(|e| RemodelError::OriginalUntrusted(e.to_string()))?;
        let device_key_id = req.device_key().key_id();
        if original.device_key().key_id() != device_key_id {
            return Err(RemodelError::DeviceKeyMismatch.into());
        }
        let named = (r.brand_id.as_str(), r.model.as_str(), r.serial.as_str());
        if (original.brand_id(), original.model(), original.serial()) != named {
            return Err(RemodelError::OriginalMismatch(format!(
                "the serial is {}/{}/{}, the serial-request names {}",
                original.brand_id(),
                original.model(),
                original.serial(),
                r.original_key()
            ))
            .into());
        }
        if !self.catalog.remodel_allowed(named, model) {
            return Err(RemodelError::NotAllowed {
                from: r.original_key(),
                to: format!("{}/{}", model.brand_id, model.name),
            }
            .into());
        }
        // The original's row, when this vault issued it to this device key.
        let log_id = self
            .log
            .latest(&r.brand_id, &r.model, &r.serial)
            .await?
            .filter(|prior| prior.issuance.device_key_id == device_key_id)
            .map(|prior| prior.id);
        Ok(OriginalLink {
            key: r.original_key(),
            log_id,
        })
    }
}
