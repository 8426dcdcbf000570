//! `serial-request` and `serial` (snapd `asserts/serial_asserts.go`), and the serial builder
//! the device plane uses: a serial is built from a validated `SerialRequest` plus the brand's
//! choices, with headers in snapd's canonical order (PROTOCOL.md 3.1, 3.2).

use time::OffsetDateTime;

use super::checks::{Parsed, SerialData, SerialRequestData};
use super::codec::{BuildError, build_content};
use super::decoded::typed_view;
use super::error::{CheckError, VerifyError};
use super::headers::{HeaderValue, Headers, valid_account_id, valid_model_chars};
use super::openpgp::RsaPublicKey;
use super::time::format_utc;
use super::types::AssertionType;

typed_view! {
    /// A decoded, checked `serial-request`. Decoding does not verify its signature: call
    /// [`SerialRequest::verify_self_signature`].
    pub struct SerialRequest(
        AssertionType::SerialRequest,
        Parsed::SerialRequest => SerialRequestData
    );
    /// `brand-id`.
    fn brand_id = "brand-id";
    /// `model`.
    fn model = "model";
    /// `request-id`.
    fn request_id = "request-id";
    /// The `device-key` header text, exactly as sent (copied into the serial).
    fn device_key_text = "device-key";
}

impl SerialRequest {
    /// The proposed `serial`, if any and non-empty.
    pub fn serial(&self) -> Option<&str> {
        self.header_str("serial").filter(|s| !s.is_empty())
    }

    /// The decoded device key.
    pub fn device_key(&self) -> &RsaPublicKey {
        &self.data().device_key
    }

    /// Verifies the self-signature with the device key (`asserts.SignatureCheck(req,
    /// req.DeviceKey())`, as snapd's device services do).
    pub fn verify_self_signature(&self) -> Result<(), VerifyError> {
        self.verify_with(self.device_key())
    }
}

typed_view! {
    /// A decoded, checked `serial`.
    pub struct Serial(AssertionType::Serial, Parsed::Serial => SerialData);
    /// `brand-id`.
    fn brand_id = "brand-id";
    /// `model`.
    fn model = "model";
    /// `serial`.
    fn serial = "serial";
}

impl Serial {
    /// The decoded device key.
    pub fn device_key(&self) -> &RsaPublicKey {
        &self.data().device_key
    }

    /// `timestamp`.
    pub fn timestamp(&self) -> OffsetDateTime {
        self.data().timestamp
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
        let err = BuildError::check(kind);
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

/// The headers of every serial the key `sign_key_id` of `authority_id` would sign for
/// `brand_id`/`model`, as far as they are known before a device asks (a serial policy).
pub fn serial_policy_headers(
    authority_id: &str,
    brand_id: &str,
    model: &str,
    sign_key_id: &str,
) -> Headers {
    let mut h = Headers::new();
    h.insert("type".into(), AssertionType::Serial.name().into());
    h.insert("authority-id".into(), authority_id.into());
    h.insert("brand-id".into(), brand_id.into());
    h.insert("model".into(), model.into());
    h.insert("sign-key-sha3-384".into(), sign_key_id.into());
    h
}

/// The headers of a serial only its device's request decides (the serial number, the device
/// key, the time, a reissue's revision, the body): unknown to [`serial_policy_headers`].
pub const SERIAL_DEVICE_HEADERS: &[&str] = &[
    "serial",
    "device-key",
    "device-key-sha3-384",
    "timestamp",
    "revision",
    "body-length",
];

/// Whether a key with these constraints may sign some serial of `brand_id`/`model` (the
/// check a serial policy gets; the built serial is matched whole before it is signed).
pub fn constraints_admit_serials(
    constraints: &super::Constraints,
    authority_id: &str,
    brand_id: &str,
    model: &str,
    sign_key_id: &str,
) -> bool {
    constraints.may_sign_partial(
        &serial_policy_headers(authority_id, brand_id, model, sign_key_id),
        SERIAL_DEVICE_HEADERS,
    )
}
