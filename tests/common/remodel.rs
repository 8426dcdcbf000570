//! The device side of a remodel re-registration, as snapd 2.57's `reregRemodelContext` builds
//! it: a serial-request for the new model carrying `original-brand-id`, `original-model` and
//! `original-serial`, self-signed by the same device key, then the new model assertion, then
//! the device's current serial; sent with the original model's `api-key`. Also the setup:
//! a second model `pc-b` with its serial policy, and a remodel policy `pc -> pc-b`.
//!
//! Needs `common`, `device` and `softhsm` as sibling modules of the test crate.

#![allow(dead_code)]

use serialmint::assertion::{AssertionType, HeaderValue, Headers, build_content};
use serialmint::store::NewRemodelPolicy;

use crate::common::TestKey;
use crate::device::*;

/// The model devices move to.
pub const MODEL_B: &str = "pc-b";
/// Its API key (devices moving to it still send the original model's).
pub const API_KEY_B: &str = "pc-b-api-key-0123456789abcdef";

/// `pc-b` with the brand key as its serial key.
pub async fn provision_model_b(server: &Server) {
    create_model(&server.store, MODEL_B, API_KEY_B).await;
    server
        .store
        .create_serial_policy(BRAND, MODEL_B, KEY_NAME, &admin())
        .await
        .unwrap();
    server.catalog.reload().await.unwrap();
}

/// A remodel policy `pc -> pc-b` (serials matching `serial` when given), in force.
pub async fn allow_remodel(server: &Server, serial: Option<&str>) {
    let policy = NewRemodelPolicy {
        from_brand_id: BRAND.into(),
        from_model: MODEL.into(),
        to_model: MODEL_B.into(),
        serial_pattern: serial.map(str::to_owned),
    };
    server
        .store
        .create_remodel_policy(BRAND, &policy, &admin())
        .await
        .unwrap();
    server.catalog.reload().await.unwrap();
}

/// A first registration as `pc` proposing `serial`: the served serial's text.
pub async fn register(server: &Server, dev: &TestKey, serial: &str) -> Vec<u8> {
    let rid = server.request_id().await;
    let mut spec = ReqSpec::new(&rid);
    spec.serial = Some(serial);
    let a = server.post_serial(&body(&spec, dev)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    a.assertions()[0].encode()
}

/// A serial-request for `to_model` with `headers` added (the `original-*` ones), with
/// `device`'s key, signed by `signer`.
pub fn rereg_request_signed_by(
    request_id: &str,
    to_model: &str,
    extra: &[(&str, &str)],
    proposed: Option<&str>,
    device: &TestKey,
    signer: &TestKey,
) -> Vec<u8> {
    let mut h = Headers::new();
    h.insert("brand-id".into(), BRAND.into());
    h.insert("model".into(), to_model.into());
    h.insert("request-id".into(), request_id.into());
    if let Some(s) = proposed {
        h.insert("serial".into(), s.into());
    }
    for (k, v) in extra {
        h.insert((*k).into(), (*v).into());
    }
    h.insert(
        "device-key".into(),
        HeaderValue::String(device.public.encode()),
    );
    let content = build_content(
        AssertionType::SerialRequest,
        &h,
        "",
        &device.public.key_id(),
    )
    .unwrap();
    signer.sign(&content, 1_767_225_600)
}

/// The `original-*` headers naming `pc`'s serial `serial`.
pub fn original(serial: &str) -> [(&'static str, String); 3] {
    [
        ("original-brand-id", BRAND.to_string()),
        ("original-model", MODEL.to_string()),
        ("original-serial", serial.to_string()),
    ]
}

/// The stream snapd sends: serial-request for `pc-b` with the `original-*` headers of
/// `serial`, the `pc-b` model, the current serial.
pub fn rereg_body(request_id: &str, serial: &str, current: &[u8], dev: &TestKey) -> Vec<u8> {
    let o = original(serial);
    let extra: Vec<(&str, &str)> = o.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let req = rereg_request_signed_by(request_id, MODEL_B, &extra, Some(serial), dev, dev);
    stream(&[&req, &model_assertion(MODEL_B), current])
}

impl Server {
    /// POSTs a serial request with `api_key`.
    pub async fn post_serial_with_key(&self, body: &[u8], api_key: &str) -> Answer {
        let headers = [
            ("api-key", api_key),
            ("content-type", "application/x.ubuntu.assertion"),
            ("snap-device-capabilities", "serial-stream"),
        ];
        request(self.addr, "POST", "/v1/serial", &headers, body).await
    }
}
