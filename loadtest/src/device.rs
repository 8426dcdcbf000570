//! What a snapd device sends (PROTOCOL.md 3.1, 4.3): a `serial-request` self-signed with its
//! device key, followed in the same stream by the `model` assertion.
//!
//! Content building, the OpenPGP signature packet and stream framing come from the project's
//! codec (`serialmint::assertion`); only the RSA operation with the device's private key is
//! done here, over exactly what the codec says is hashed (`CONTENT || hash_suffix`).

use serialmint::assertion::openpgp::hash_suffix;
use serialmint::assertion::{
    AssertionType, HeaderValue, Headers, assemble_encoded, build_content, encode_stream,
    signing_input,
};

use crate::keys::DeviceKey;

/// The parts of a serial-request that vary per device.
#[derive(Debug, Clone, Copy)]
pub struct RequestFields<'a> {
    /// `brand-id`.
    pub brand_id: &'a str,
    /// `model`.
    pub model: &'a str,
    /// `request-id` from the request-id call.
    pub request_id: &'a str,
    /// The proposed `serial`, if any.
    pub serial: Option<&'a str>,
    /// The body (gadget `registration.body`); empty = none.
    pub body: &'a str,
}

/// A signed serial-request, encoded, made at `created` (unix seconds).
pub fn serial_request(
    key: &DeviceKey,
    fields: RequestFields<'_>,
    created: u32,
) -> Result<Vec<u8>, String> {
    let mut h = Headers::new();
    h.insert("brand-id".into(), HeaderValue::from(fields.brand_id));
    h.insert("device-key".into(), HeaderValue::from(key.text()));
    h.insert("model".into(), HeaderValue::from(fields.model));
    h.insert("request-id".into(), HeaderValue::from(fields.request_id));
    if let Some(s) = fields.serial {
        h.insert("serial".into(), HeaderValue::from(s));
    }
    let content = build_content(AssertionType::SerialRequest, &h, fields.body, key.id())
        .map_err(|e| e.to_string())?;
    Ok(sign_content(key, &content, created))
}

/// Signs assertion `content` with `key` at `created` and returns the encoded assertion.
pub fn sign_content(key: &DeviceKey, content: &[u8], created: u32) -> Vec<u8> {
    let mut signed = Vec::with_capacity(content.len() + 18);
    signed.extend_from_slice(content);
    signed.extend_from_slice(&hash_suffix(created));
    let rsa = key.sign_sha512(&signed);
    let block = signing_input(content, created).encode_signature(&rsa);
    assemble_encoded(content, &block)
}

/// The body of `POST serial`: the serial-request, then the model (snapd's `Encoder`).
pub fn stream(serial_request: &[u8], model: &[u8]) -> Vec<u8> {
    encode_stream([serial_request, model])
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::ProgressBar;
    use serialmint::assertion::{SerialRequest, decode_stream};

    #[test]
    fn serial_request_decodes_and_verifies_with_the_codec() {
        let dir = tempfile::tempdir().unwrap();
        let keys = crate::keys::load_or_generate(dir.path(), 1, 1, &ProgressBar::hidden()).unwrap();
        let fields = RequestFields {
            brand_id: "developer1",
            model: "pc",
            request_id: "REQ-1",
            serial: Some("S-0001"),
            body: "",
        };
        let sr = serial_request(&keys[0], fields, 1_700_000_000).unwrap();
        let model = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/snapd/developer1-pc.model"
        ))
        .unwrap();
        let body = stream(&sr, &model);
        let all = decode_stream(&body).unwrap();
        assert_eq!(all.len(), 2, "serial-request then model");
        assert_eq!(all[1].kind(), AssertionType::Model);
        let req = SerialRequest::try_from(all[0].clone()).unwrap();
        assert_eq!(req.request_id(), "REQ-1");
        assert_eq!(req.serial(), Some("S-0001"));
        assert_eq!(req.device_key().key_id(), keys[0].id());
        req.verify_self_signature().unwrap();
        // Canonical order (PROTOCOL.md 3.1).
        let text = String::from_utf8(sr).unwrap();
        let names: Vec<&str> = text
            .split("\n\n")
            .next()
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with(' '))
            .map(|l| l.split(':').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "type",
                "brand-id",
                "device-key",
                "model",
                "request-id",
                "serial",
                "sign-key-sha3-384"
            ]
        );
    }

    #[test]
    fn a_tampered_request_does_not_verify() {
        let dir = tempfile::tempdir().unwrap();
        let keys = crate::keys::load_or_generate(dir.path(), 1, 1, &ProgressBar::hidden()).unwrap();
        let fields = RequestFields {
            brand_id: "developer1",
            model: "pc",
            request_id: "REQ-1",
            serial: None,
            body: "",
        };
        let sr = serial_request(&keys[0], fields, 1_700_000_000).unwrap();
        let tampered = String::from_utf8(sr)
            .unwrap()
            .replace("REQ-1", "REQ-2")
            .into_bytes();
        let a = decode_stream(&tampered).unwrap().remove(0);
        assert!(
            SerialRequest::try_from(a)
                .unwrap()
                .verify_self_signature()
                .is_err()
        );
    }
}
