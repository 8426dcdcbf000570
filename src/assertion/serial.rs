//! `serial-request` and `serial` (snapd `asserts/serial_asserts.go`), and the serial builder
//! the device plane uses: a serial is built from a validated `SerialRequest` plus the brand's
//! choices, with headers in snapd's canonical order (PROTOCOL.md 3.1, 3.2).

use std::ops::Deref;

use time::OffsetDateTime;

use super::codec::{BuildError, build_content};
use super::error::{CheckError, VerifyError};
use super::headers::{HeaderValue, Headers};
use super::openpgp::RsaPublicKey;
use super::time::format_utc;
use super::types::{AssertionType, Parsed, valid_account_id, valid_model_chars};
use super::{Assertion, WrongType};

/// A decoded, checked `serial-request`. Decoding does not verify its signature: call
/// [`SerialRequest::verify_self_signature`].
#[derive(Debug, Clone)]
pub struct SerialRequest(Assertion);

impl TryFrom<Assertion> for SerialRequest {
    type Error = WrongType;
    fn try_from(a: Assertion) -> Result<Self, WrongType> {
        match a.parsed {
            Parsed::SerialRequest { .. } => Ok(Self(a)),
            _ => Err(WrongType {
                expected: AssertionType::SerialRequest,
                found: a.kind(),
            }),
        }
    }
}

impl Deref for SerialRequest {
    type Target = Assertion;
    fn deref(&self) -> &Assertion {
        &self.0
    }
}

impl SerialRequest {
    /// The whole assertion.
    pub fn into_inner(self) -> Assertion {
        self.0
    }

    /// `brand-id`.
    pub fn brand_id(&self) -> &str {
        self.header_str("brand-id").unwrap_or_default()
    }

    /// `model`.
    pub fn model(&self) -> &str {
        self.header_str("model").unwrap_or_default()
    }

    /// `request-id`.
    pub fn request_id(&self) -> &str {
        self.header_str("request-id").unwrap_or_default()
    }

    /// The proposed `serial`, if any and non-empty.
    pub fn serial(&self) -> Option<&str> {
        self.header_str("serial").filter(|s| !s.is_empty())
    }

    /// The `device-key` header text, exactly as sent (copied into the serial).
    pub fn device_key_text(&self) -> &str {
        self.header_str("device-key").unwrap_or_default()
    }

    /// The decoded device key.
    pub fn device_key(&self) -> &RsaPublicKey {
        match &self.0.parsed {
            Parsed::SerialRequest { device_key } => device_key,
            _ => unreachable!("built only from a parsed serial-request"),
        }
    }

    /// Verifies the self-signature with the device key (`asserts.SignatureCheck(req,
    /// req.DeviceKey())`, as snapd's device services do).
    pub fn verify_self_signature(&self) -> Result<(), VerifyError> {
        self.0.verify_with(self.device_key())
    }
}

/// A decoded, checked `serial`.
#[derive(Debug, Clone)]
pub struct Serial(Assertion);

impl TryFrom<Assertion> for Serial {
    type Error = WrongType;
    fn try_from(a: Assertion) -> Result<Self, WrongType> {
        match a.parsed {
            Parsed::Serial { .. } => Ok(Self(a)),
            _ => Err(WrongType {
                expected: AssertionType::Serial,
                found: a.kind(),
            }),
        }
    }
}

impl Deref for Serial {
    type Target = Assertion;
    fn deref(&self) -> &Assertion {
        &self.0
    }
}

impl Serial {
    /// The whole assertion.
    pub fn into_inner(self) -> Assertion {
        self.0
    }

    /// `brand-id`.
    pub fn brand_id(&self) -> &str {
        self.header_str("brand-id").unwrap_or_default()
    }

    /// `model`.
    pub fn model(&self) -> &str {
        self.header_str("model").unwrap_or_default()
    }

    /// `serial`.
    pub fn serial(&self) -> &str {
        self.header_str("serial").unwrap_or_default()
    }

    /// The decoded device key.
    pub fn device_key(&self) -> &RsaPublicKey {
        match &self.0.parsed {
            Parsed::Serial { device_key, .. } => device_key,
            _ => unreachable!("built only from a parsed serial"),
        }
    }

    /// `timestamp`.
    pub fn timestamp(&self) -> OffsetDateTime {
        match &self.0.parsed {
            Parsed::Serial { timestamp, .. } => *timestamp,
            _ => unreachable!("built only from a parsed serial"),
        }
    }
}

/// Builds a `serial` (PROTOCOL.md 3.2). Emitted order: `type, authority-id, [revision],
/// brand-id, model, serial, device-key, device-key-sha3-384, timestamp, [body-length],
/// sign-key-sha3-384`.
#[derive(Debug, Clone)]
pub struct SerialBuilder {
    /// `authority-id`: the signing account (normally the brand).
    pub authority_id: String,
    /// `brand-id`.
    pub brand_id: String,
    /// `model`.
    pub model: String,
    /// `serial`.
    pub serial: String,
    /// `device-key` text, copied verbatim from the serial-request.
    pub device_key_text: String,
    /// `device-key-sha3-384`.
    pub device_key_id: String,
    /// `timestamp`, emitted as `YYYY-MM-DDTHH:MM:SSZ`.
    pub timestamp: OffsetDateTime,
    /// `revision` (0 = omitted).
    pub revision: u32,
    /// The body (often the serial-request's body); empty = none.
    pub body: String,
}

impl SerialBuilder {
    /// A serial for `req`: brand, model, device key and body come from the request; the
    /// authority is the brand.
    pub fn from_request(req: &SerialRequest, serial: &str, timestamp: OffsetDateTime) -> Self {
        Self {
            authority_id: req.brand_id().to_owned(),
            brand_id: req.brand_id().to_owned(),
            model: req.model().to_owned(),
            serial: serial.to_owned(),
            device_key_text: req.device_key_text().to_owned(),
            device_key_id: req.device_key().key_id(),
            timestamp,
            revision: 0,
            body: std::str::from_utf8(req.body())
                .unwrap_or_default()
                .to_owned(),
        }
    }

    /// Sets another signing authority (it must be in the model's `serial-authority`).
    pub fn authority(mut self, authority_id: &str) -> Self {
        self.authority_id = authority_id.to_owned();
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    /// The canonical content to sign with the key named `sign_key_id`. Applies the checks
    /// snapd's `assembleSerial` would apply on the device.
    pub fn content(&self, sign_key_id: &str) -> Result<Vec<u8>, BuildError> {
        let kind = AssertionType::Serial;
        let err = |err| BuildError::Check {
            kind: kind.name(),
            err,
        };
        if !valid_account_id(&self.brand_id) {
            return Err(err(CheckError::InvalidChars(
                "brand-id".into(),
                self.brand_id.clone(),
            )));
        }
        if !valid_model_chars(&self.model) || self.model.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err(CheckError::InvalidChars(
                "model".into(),
                self.model.clone(),
            )));
        }
        if self.device_key_text.is_empty() || self.device_key_id.is_empty() {
            return Err(err(CheckError::Empty("device-key".into())));
        }
        let mut h = Headers::new();
        let mut put = |k: &str, v: &str| h.insert(k.to_owned(), HeaderValue::from(v));
        put("authority-id", &self.authority_id);
        put("brand-id", &self.brand_id);
        put("model", &self.model);
        put("serial", &self.serial);
        put("device-key", &self.device_key_text);
        put("device-key-sha3-384", &self.device_key_id);
        put("timestamp", &format_utc(self.timestamp));
        if self.revision > 0 {
            put("revision", &self.revision.to_string());
        }
        build_content(kind, &h, &self.body, sign_key_id)
    }
}
