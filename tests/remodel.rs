//! Remodel re-registration on the real device plane (SoftHSM token, Postgres): a device
//! registered as `pc` re-registers as `pc-b` under a remodel policy, with the stream snapd
//! 2.57 sends (serial-request with `original-*`, new model, current serial); the serial for
//! `pc-b` is logged with its link to the original, and an exact replay answers the same
//! serial. Every refusal has its status and JSON code, and leaves the signing log as it was.
//!
//! Run with `cargo nextest run --test remodel`.

mod common;
#[path = "common/device.rs"]
mod device;
#[path = "common/remodel.rs"]
mod remodel;
#[path = "common/softhsm.rs"]
mod softhsm;

use serialmint::assertion::{AssertionType, Headers, build_content};
use serialmint::store::LogFilter;
use sqlx::PgPool;

use device::*;
use remodel::*;

/// A served setup with `pc-b` and (when `policy`) the remodel policy `pc -> pc-b`.
async fn remodel_setup(pool: PgPool, policy: bool) -> (Token, Server) {
    let (token, server) = setup(pool).await;
    provision_model_b(&server).await;
    if policy {
        allow_remodel(&server, None).await;
    }
    (token, server)
}

#[sqlx::test]
async fn a_device_re_registers_as_another_model(pool: PgPool) {
    let (_token, server) = remodel_setup(pool, true).await;
    let dev = device_key("remodel-a", 4096);
    let current = register(&server, &dev, "SN-0001").await;

    let rid = server.request_id().await;
    let body = rereg_body(&rid, "SN-0001", &current, &dev);
    // The original gadget's device-service configuration: the original model's api-key.
    let a = server.post_serial_with_key(&body, API_KEY).await;
    let serial = check_serial(&a, &dev, MODEL_B, true);
    assert_eq!(serial.serial(), "SN-0001");

    // Logged with the link to the original serial (ours: its row too).
    let first = server
        .store
        .latest_issuance(BRAND, MODEL, "SN-0001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.issuance.original_serial, None);
    let filter = LogFilter {
        model: Some(MODEL_B.into()),
        ..LogFilter::default()
    };
    let rows = server
        .store
        .signing_log_page(&filter, None, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0].issuance;
    assert_eq!(
        row.original_serial.as_deref(),
        Some("testrootorg/pc/SN-0001")
    );
    assert_eq!(row.original_serial_id, Some(first.id));
    assert_eq!(row.serial_assertion.as_bytes(), a.assertions()[0].encode());

    // An exact replay answers the same serial, and signs nothing new.
    let again = server.post_serial_with_key(&body, API_KEY).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.assertions()[0].encode(), a.assertions()[0].encode());
    assert_eq!(server.logged().await, 2);
}

#[sqlx::test]
async fn a_generated_serial_and_a_serial_pattern(pool: PgPool) {
    let (_token, server) = remodel_setup(pool, false).await;
    allow_remodel(&server, Some("LINE1-[0-9]+")).await;
    let dev = device_key("remodel-a", 4096);
    let current = register(&server, &dev, "LINE1-42").await;
    // No proposed serial: pc-b generates one (UUID), as on first boot.
    let rid = server.request_id().await;
    let o = original("LINE1-42");
    let extra: Vec<(&str, &str)> = o.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let req = rereg_request_signed_by(&rid, MODEL_B, &extra, None, &dev, &dev);
    let a = server
        .post_serial_with_key(
            &stream(&[&req, &model_assertion(MODEL_B), &current]),
            API_KEY,
        )
        .await;
    let serial = check_serial(&a, &dev, MODEL_B, true);
    assert_ne!(serial.serial(), "LINE1-42");
    assert_eq!(serial.serial().len(), 36, "{}", serial.serial());

    // A serial outside the pattern is not allowed to move.
    let other = device_key("remodel-b", 4096);
    let current = register(&server, &other, "LINE2-7").await;
    let rid = server.request_id().await;
    let a = server
        .post_serial_with_key(&rereg_body(&rid, "LINE2-7", &current, &other), API_KEY)
        .await;
    a.assert_error(403, "remodel-not-allowed");
    assert!(
        a.json()["message"]
            .as_str()
            .unwrap()
            .contains("testrootorg/pc/LINE2-7")
    );
}

/// Posts `body` with `api_key`, expects `status` and `code`, and checks nothing was logged.
async fn refused(server: &Server, body: &[u8], api_key: &str, status: u16, code: &str) {
    let before = server.logged().await;
    let a = server.post_serial_with_key(body, api_key).await;
    a.assert_error(status, code);
    assert_eq!(server.logged().await, before, "{code}: a serial was logged");
}

#[sqlx::test]
async fn every_remodel_refusal_has_its_code(pool: PgPool) {
    let (_token, server) = remodel_setup(pool, true).await;
    let dev = device_key("remodel-a", 4096);
    let other = device_key("remodel-b", 4096);
    let current = register(&server, &dev, "SN-0001").await;
    let others = register(&server, &other, "SN-0002").await;
    let o = original("SN-0001");
    let headers: Vec<(&str, &str)> = o.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let model_b = model_assertion(MODEL_B);
    let rid = server.request_id().await;
    let req = rereg_request_signed_by(&rid, MODEL_B, &headers, Some("SN-0001"), &dev, &dev);

    // The headers without the current serial, the serial without the headers, a header
    // missing.
    let body = stream(&[&req, &model_b]);
    refused(&server, &body, API_KEY, 400, "remodel-request-incomplete").await;
    let plain = rereg_request_signed_by(&rid, MODEL_B, &[], Some("SN-0001"), &dev, &dev);
    let body = stream(&[&plain, &model_b, &current]);
    refused(&server, &body, API_KEY, 400, "remodel-request-incomplete").await;
    let partial = rereg_request_signed_by(&rid, MODEL_B, &headers[..2], None, &dev, &dev);
    let body = stream(&[&partial, &model_b, &current]);
    refused(&server, &body, API_KEY, 400, "remodel-request-incomplete").await;

    // An original serial signed by a key nobody trusts (same headers, same device key).
    let rogue = device_key("remodel-rogue", 4096);
    let forged = {
        let s = serialmint::assertion::decode(&current).unwrap();
        let mut h = Headers::new();
        for k in [
            "authority-id",
            "brand-id",
            "model",
            "serial",
            "device-key",
            "device-key-sha3-384",
            "timestamp",
        ] {
            h.insert(k.into(), s.header_str(k).unwrap().into());
        }
        let content = build_content(AssertionType::Serial, &h, "", &rogue.public.key_id()).unwrap();
        rogue.sign(&content, 1_767_225_600)
    };
    let body = stream(&[&req, &model_b, &forged]);
    refused(&server, &body, API_KEY, 400, "original-serial-untrusted").await;

    // Another device's serial.
    let o2 = original("SN-0002");
    let h2: Vec<(&str, &str)> = o2.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let req2 = rereg_request_signed_by(&rid, MODEL_B, &h2, None, &dev, &dev);
    let body = stream(&[&req2, &model_b, &others]);
    refused(
        &server,
        &body,
        API_KEY,
        400,
        "original-serial-device-key-mismatch",
    )
    .await;

    // Headers naming another serial than the one sent.
    let o3 = original("SN-0003");
    let h3: Vec<(&str, &str)> = o3.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let req3 = rereg_request_signed_by(&rid, MODEL_B, &h3, None, &dev, &dev);
    let body = stream(&[&req3, &model_b, &current]);
    refused(&server, &body, API_KEY, 400, "original-serial-mismatch").await;

    // A new model assertion that does not verify.
    let bad_model = model_assertion_signed_by(BRAND, MODEL_B, &rogue);
    let body = stream(&[&req, &bad_model, &current]);
    refused(&server, &body, API_KEY, 400, "invalid-model").await;

    // As for a first registration: the request-id, the API key (the original model's).
    let stale = rereg_request_signed_by("not-a-request-id", MODEL_B, &headers, None, &dev, &dev);
    let body = stream(&[&stale, &model_b, &current]);
    refused(&server, &body, API_KEY, 400, "invalid-request-id").await;
    let body = stream(&[&req, &model_b, &current]);
    refused(&server, &body, API_KEY_B, 403, "model-not-allowed").await;
    // The serial-request's self-signature.
    let unsigned = rereg_request_signed_by(&rid, MODEL_B, &headers, None, &dev, &rogue);
    let body = stream(&[&unsigned, &model_b, &current]);
    refused(&server, &body, API_KEY, 400, "invalid-request-signature").await;

    // No policy for the move (deleted): refused until one exists.
    server
        .store
        .delete_remodel_policy(BRAND, BRAND, MODEL, MODEL_B, &admin())
        .await
        .unwrap();
    server.catalog.reload().await.unwrap();
    let body = stream(&[&req, &model_b, &current]);
    refused(&server, &body, API_KEY, 403, "remodel-not-allowed").await;
    // A device moving "back" (pc-b -> pc) has no policy either, whatever it holds.
    let rid = server.request_id().await;
    let back = rereg_request_signed_by(&rid, MODEL, &headers, None, &dev, &dev);
    let body = stream(&[&back, &model_assertion(MODEL), &current]);
    refused(&server, &body, API_KEY, 403, "remodel-not-allowed").await;

    // With the policy back, the same request passes (nothing above was spent).
    allow_remodel(&server, None).await;
    let a = server
        .post_serial_with_key(&body_for(&req, &current), API_KEY)
        .await;
    check_serial(&a, &dev, MODEL_B, true);
}

fn body_for(req: &[u8], current: &[u8]) -> Vec<u8> {
    stream(&[req, &model_assertion(MODEL_B), current])
}
