//! Golden vectors: `shared/vectors/vectors.txt` reproduced byte for byte with snapd's test
//! keys, real snapd assertions verified against the test root, and trust chains.

mod common;

use common::*;
use serialmint::assertion::openpgp::{hash_suffix, signing_input};
use serialmint::assertion::verify_digest_info;
use serialmint::assertion::{
    AssertionType, HeaderValue, Headers, Model, SerialBuilder, SerialRequest, build_content,
    decode, decode_stream,
};
use serialmint::trust::{TrustDb, TrustError};

fn vector_block(title: &str) -> Vec<u8> {
    let v = fixture_str("vectors/vectors.txt");
    let start = v.find(title).unwrap();
    let line_end = start + v[start..].find('\n').unwrap() + 1;
    let n: usize = title
        .split('(')
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    v.as_bytes()[line_end..line_end + n].to_vec()
}

fn vector_serial_request() -> Vec<u8> {
    let store = TestKey::store();
    let mut h = Headers::new();
    h.insert("brand-id".into(), "testrootorg".into());
    h.insert("model".into(), "my-model".into());
    h.insert("request-id".into(), "REQ-ID-1".into());
    h.insert("serial".into(), "proposed-0001".into());
    h.insert(
        "device-key".into(),
        HeaderValue::String(store.public.encode()),
    );
    let content = build_content(
        AssertionType::SerialRequest,
        &h,
        "mac: 00:11:22:33:44:55",
        &store.public.key_id(),
    )
    .unwrap();
    store.sign(&content, T2024)
}

#[test]
fn serial_request_vector_is_byte_identical() {
    let expected = vector_block("===== serial-request (1719 bytes encoded) =====");
    let ours = vector_serial_request();
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(
        hex(&hash_suffix(T2024)),
        "0400010a0006050265937d2504ff0000000c"
    );
}

#[test]
fn serial_vector_is_byte_identical() {
    let expected = vector_block("===== serial (1794 bytes encoded) =====");
    let req = SerialRequest::try_from(decode(&vector_serial_request()).unwrap()).unwrap();
    req.verify_self_signature().unwrap();
    let root = TestKey::root();
    let content = SerialBuilder::from_request(&req, "proposed-0001", ts("2024-01-02T03:04:05Z"))
        .body("")
        .content(&root.public.key_id())
        .unwrap();
    let input = signing_input(&content, T2024);
    assert!(hex(input.digest()).starts_with("65402365ae87fefc"));
    // the prehashed check used after the HSM signs: right key passes, anything else fails
    let parsed = serialmint::assertion::SignaturePacket::decode(
        expected[content.len() + 2..].trim_ascii_end(),
    )
    .unwrap();
    let rsa_sig = parsed.rsa_sig.clone();
    verify_digest_info(&root.public, input.digest_info(), &rsa_sig).unwrap();
    assert!(verify_digest_info(&TestKey::store().public, input.digest_info(), &rsa_sig).is_err());
    let mut other = *input.digest_info();
    other[82] ^= 1;
    assert!(verify_digest_info(&root.public, &other, &rsa_sig).is_err());
    let ours = root.sign(&content, T2024);
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&expected)
    );
    // and it verifies against the test root
    let serial = decode(&ours).unwrap();
    test_trust()
        .check(&serial, ts("2025-01-01T00:00:00Z"))
        .unwrap();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn key_ids_match_snapd() {
    assert_eq!(
        TestKey::root().public.key_id(),
        "hIedp1AvrWlcDI4uS_qjoFLzjKl5enu4G2FYJpgB3Pj-tUzGlTQBxMBsBmi-tnJR"
    );
    assert_eq!(
        TestKey::store().public.key_id(),
        "XCIC_Wvj9_hiAt0b10sDon74oGr3a6xGODkMZqrj63ZzNYUD5N87-ojjPoeN7f1Y"
    );
}

#[test]
fn real_uc20_serial_verifies() {
    let a = decode(&fixture("snapd/happy-serial-uc20.serial")).unwrap();
    assert_eq!(a.kind(), AssertionType::Serial);
    test_trust().check(&a, ts("2025-01-01T00:00:00Z")).unwrap();
    // tampering breaks it
    let mut bytes = fixture("snapd/happy-serial-uc20.serial");
    let i = bytes.windows(7).position(|w| w == b"serial:").unwrap();
    bytes[i + 8] ^= 1;
    if let Ok(bad) = decode(&bytes) {
        assert!(
            test_trust()
                .check(&bad, ts("2025-01-01T00:00:00Z"))
                .is_err()
        );
    }
}

fn dev_chain() -> TrustDb {
    let mut extra = Vec::new();
    for f in [
        "testrootorg-store.account-key",
        "developer1.account",
        "developer1.account-key",
    ] {
        extra.extend(decode_stream(&fixture(&format!("snapd/{f}"))).unwrap());
    }
    test_trust()
        .with_admitted(extra, ts("2025-01-01T00:00:00Z"))
        .unwrap()
}

#[test]
fn tests_lib_model_verifies_through_chain() {
    let db = dev_chain();
    let model = Model::try_from(decode(&fixture("snapd/developer1-pc.model")).unwrap()).unwrap();
    assert_eq!(model.brand_id(), "developer1");
    assert!(!model.is_extended());
    db.check_model(&model, ts("2025-01-01T00:00:00Z")).unwrap();
    // without the chain the key is unknown
    assert!(matches!(
        test_trust().check_model(&model, ts("2025-01-01T00:00:00Z")),
        Err(TrustError::NoKey { .. })
    ));
}

/// The same model is checked once per serial; its verified signature is remembered, but a
/// copy with any changed byte (content or signature) is verified afresh and refused.
#[test]
fn remembered_model_signature_does_not_cover_tampered_copies() {
    let db = dev_chain();
    let now = ts("2025-01-01T00:00:00Z");
    let text = fixture("snapd/developer1-pc.model");
    let model = Model::try_from(decode(&text).unwrap()).unwrap();
    for _ in 0..3 {
        db.check_model(&model, now).unwrap();
    }
    let s = String::from_utf8(text.clone()).unwrap();
    let tampered = s.replacen("model: my-model", "model: my-modem", 1);
    assert_ne!(tampered, s, "the fixture names model my-model");
    let changed = Model::try_from(decode(tampered.as_bytes()).unwrap()).unwrap();
    assert!(matches!(
        db.check_model(&changed, now),
        Err(TrustError::Signature(_))
    ));
    // Last base64 character of the signature block changed.
    let mut sig_tampered = text.clone();
    let end = sig_tampered
        .iter()
        .rposition(|b| b.is_ascii_alphanumeric())
        .unwrap();
    sig_tampered[end] = if sig_tampered[end] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let m = Model::try_from(decode(&sig_tampered).unwrap()).unwrap();
    assert!(db.check_model(&m, now).is_err());
    // A database derived from this one shares what was verified and still refuses.
    let derived = db.with_admitted(Vec::new(), now).unwrap();
    derived.check_model(&model, now).unwrap();
    assert!(derived.check_model(&changed, now).is_err());
}

#[test]
fn chain_needs_the_account() {
    let key = decode(&fixture("snapd/developer1.account-key")).unwrap();
    let store = decode(&fixture("snapd/testrootorg-store.account-key")).unwrap();
    let err = test_trust()
        .with_admitted([store, key], ts("2025-01-01T00:00:00Z"))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not have a matching account assertion"),
        "{err}"
    );
}

#[test]
fn builtin_roots_verify_themselves() {
    let db = TrustDb::builtin();
    let key = decode(&fixture("snapd/canonical.account-key")).unwrap();
    let acct = decode(&fixture("snapd/canonical.account")).unwrap();
    db.check(&key, ts("2025-01-01T00:00:00Z")).unwrap();
    db.check(&acct, ts("2025-01-01T00:00:00Z")).unwrap();
    // a testrootorg-signed key is not trusted by the production roots
    let dev = decode(&fixture("snapd/testrootorg-store.account-key")).unwrap();
    assert!(db.check(&dev, ts("2025-01-01T00:00:00Z")).is_err());
}

/// The device plane's check of an assembled serial (no second RSA): the genuine signature
/// block passes; another signature, other content or another signing time is refused.
#[test]
fn encoded_signature_check_catches_every_mismatch() {
    use serialmint::assertion::check_encoded_signature;
    let key = TestKey::store();
    let content = b"type: account\nauthority-id: canonical\naccount-id: x".to_vec();
    let input = signing_input(&content, T2024);
    let mut msg = content.clone();
    msg.extend_from_slice(&hash_suffix(T2024));
    let sig = key.raw_sign(&aws_lc_rs::signature::RSA_PKCS1_SHA512, &msg);
    let block = input.encode_signature(&sig);
    check_encoded_signature(&content, block.as_bytes(), input.digest_info(), &sig).unwrap();

    let other_msg = b"something else".to_vec();
    let other_sig = key.raw_sign(&aws_lc_rs::signature::RSA_PKCS1_SHA512, &other_msg);
    let cases: [(&[u8], String, &[u8]); 3] = [
        // the block carries another signature than the one checked
        (&content, input.encode_signature(&other_sig), &sig),
        // other content under the same block
        (
            b"type: account\nauthority-id: canonical\naccount-id: y",
            block.clone(),
            &sig,
        ),
        // a block made for another signing time
        (
            &content,
            signing_input(&content, T2024 + 1).encode_signature(&sig),
            &sig,
        ),
    ];
    for (i, (c, b, s)) in cases.iter().enumerate() {
        assert!(
            check_encoded_signature(c, b.as_bytes(), input.digest_info(), s).is_err(),
            "case {i} passed"
        );
    }
}
