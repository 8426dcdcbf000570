//! The device plane over real HTTP, on a real SoftHSM token (snapd's TestRootPrivKey as the
//! brand key of testrootorg) and a real Postgres (a fresh database per test). The device side
//! is built with the project's codec and fresh RSA-4096 keys; serials are checked with the
//! codec's chain verification against the testrootorg root, as a device would.
//!
//! Run with `cargo nextest run` (one process per test: SoftHSM is process-wide).

mod common;
#[path = "common/device.rs"]
mod device;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::time::{Duration, SystemTime};

use serialmint::assertion::AssertionType;
use serialmint::registration::RequestIds;
use serialmint::store::{DuplicatePolicy, ModelChange, Store};
use sqlx::PgPool;

use common::TestKey;
use device::*;

#[sqlx::test]
async fn happy_path_v1_routes_with_serial_stream(pool: PgPool) {
    let (_token, server) = setup(pool).await;
    let dev = device_key("a", 4096);
    let rid = server.request_id().await;
    let mut spec = ReqSpec::new(&rid);
    spec.serial = Some("pc-0001");
    spec.body = "mac: 00:11:22:33:44:55";
    let a = server
        .post_serial_at("/v1/serial", &body(&spec, &dev), true)
        .await;
    let serial = check_serial(&a, &dev, MODEL, true);
    assert_eq!(serial.serial(), "pc-0001");
    assert_eq!(serial.body(), b"mac: 00:11:22:33:44:55");
    assert_eq!(serial.revision(), 0);
    assert_eq!(server.logged().await, 1);

    // The held chain is also served for devices that fetch it.
    let ak = request(
        server.addr,
        "GET",
        &format!(
            "/v2/assertions/account-key/{}",
            TestKey::root().public.key_id()
        ),
        &[("accept", "application/x.ubuntu.assertion")],
        b"",
    )
    .await;
    assert_eq!(ak.status, 200, "{}", ak.text());
    assert_eq!(ak.assertions()[0].kind(), AssertionType::AccountKey);
    let missing = request(
        server.addr,
        "GET",
        "/v2/assertions/account/nobody",
        &[],
        b"",
    )
    .await;
    missing.assert_error(404, "not-found");
}

#[sqlx::test]
async fn happy_path_store_routes_serial_alone(pool: PgPool) {
    let (_token, server) = setup(pool).await;
    let dev = device_key("a", 4096);
    let rid = server.request_id_at("/api/v1/snaps/auth/request-id").await;
    let a = server
        .post_serial_at(
            "/api/v1/snaps/auth/devices",
            &body(&ReqSpec::new(&rid), &dev),
            false,
        )
        .await;
    let serial = check_serial(&a, &dev, MODEL, false);
    // No proposed serial: a random UUID.
    assert!(
        uuid::Uuid::parse_str(serial.serial()).is_ok(),
        "{}",
        serial.serial()
    );
    assert_eq!(server.logged().await, 1);
}

#[sqlx::test]
async fn api_key_media_type_and_size_refusals(pool: PgPool) {
    let (_token, server) = setup(pool).await;
    let dev = device_key("a", 4096);
    let rid = server.request_id().await;
    let good = body(&ReqSpec::new(&rid), &dev);
    let ct = ("content-type", "application/x.ubuntu.assertion");

    for path in ["/v1/request-id", "/api/v1/snaps/auth/request-id"] {
        request(server.addr, "POST", path, &[], b"")
            .await
            .assert_error(401, "api-key-missing");
        request(
            server.addr,
            "POST",
            path,
            &[("api-key", "not-the-key-0123456789")],
            b"",
        )
        .await
        .assert_error(403, "api-key-invalid");
    }
    for path in ["/v1/serial", "/api/v1/snaps/auth/devices"] {
        request(server.addr, "POST", path, &[ct], &good)
            .await
            .assert_error(401, "api-key-missing");
        request(
            server.addr,
            "POST",
            path,
            &[("api-key", "not-the-key-0123456789"), ct],
            &good,
        )
        .await
        .assert_error(403, "api-key-invalid");
        request(
            server.addr,
            "POST",
            path,
            &[("api-key", API_KEY), ("content-type", "application/json")],
            &good,
        )
        .await
        .assert_error(415, "unsupported-media-type");
        request(server.addr, "POST", path, &[("api-key", API_KEY)], &good)
            .await
            .assert_error(415, "unsupported-media-type");
    }
    let big = vec![b'a'; server.config.max_body_bytes + 1];
    server
        .post_serial(&big)
        .await
        .assert_error(413, "too-large");

    // The API key never appears in an answer.
    let a = request(
        server.addr,
        "POST",
        "/v1/serial",
        &[("api-key", "secret-wrong-key-0123456789"), ct],
        &good,
    )
    .await;
    assert!(!a.text().contains("secret-wrong-key"), "{}", a.text());
    assert_eq!(server.logged().await, 0);
}

#[sqlx::test]
async fn stream_shape_signature_and_key_size_refusals(pool: PgPool) {
    let (_token, server) = setup(pool).await;
    let dev = device_key("a", 4096);
    let other = device_key("b", 4096);
    let weak = device_key("weak", 2048);
    let rid = server.request_id().await;
    let spec = ReqSpec::new(&rid);
    let req = serial_request(&spec, &dev);
    let model = model_assertion(MODEL);

    let shapes: [Vec<u8>; 5] = [
        b"not an assertion".to_vec(),
        stream(&[&req]),
        stream(&[&model, &req]),
        stream(&[&req, &model, &model]),
        stream(&[&req, &req]),
    ];
    for s in shapes {
        server
            .post_serial(&s)
            .await
            .assert_error(400, "invalid-stream");
    }
    // Claims dev's key, signed by another key.
    let forged = serial_request_signed_by(&spec, &dev, &other);
    server
        .post_serial(&stream(&[&forged, &model]))
        .await
        .assert_error(400, "invalid-request-signature");
    // RSA-2048 device key.
    server
        .post_serial(&body(&spec, &weak))
        .await
        .assert_error(400, "device-key-too-weak");
    assert_eq!(server.logged().await, 0);
}

#[sqlx::test]
async fn bad_and_expired_request_ids(pool: PgPool) {
    let (_token, server) = setup(pool).await;
    let dev = device_key("a", 4096);
    for bad in ["REQ-ID-1", &"A".repeat(75)] {
        server
            .post_serial(&body(&ReqSpec::new(bad), &dev))
            .await
            .assert_error(400, "invalid-request-id");
    }
    // Issued by another secret (another deployment).
    let foreign = RequestIds::new(&[7u8; 32], Duration::from_secs(600)).issue();
    server
        .post_serial(&body(&ReqSpec::new(&foreign), &dev))
        .await
        .assert_error(400, "invalid-request-id");
    // Issued under the shared secret, but an hour ago.
    let secret = server.store.request_id_secret().await.unwrap();
    let old = RequestIds::new(&secret, Duration::from_secs(600))
        .issue_at(SystemTime::now() - Duration::from_secs(3600));
    server
        .post_serial(&body(&ReqSpec::new(&old), &dev))
        .await
        .assert_error(400, "request-id-expired");
    assert_eq!(server.logged().await, 0);
}

#[sqlx::test]
async fn model_refusals(pool: PgPool) {
    let (_token, server) = setup(pool).await;
    let store = &server.store;
    let dev = device_key("a", 4096);
    let rid = server.request_id().await;

    // Unknown model.
    let mut spec = ReqSpec::new(&rid);
    spec.model = "nosuch";
    server
        .post_serial(&body(&spec, &dev))
        .await
        .assert_error(404, "unknown-model");

    // A model of another API key.
    create_model(store, "tablet", "tablet-api-key-0123456789").await;
    // A model without serial policy (same API key as pc).
    create_model(store, "kiosk", API_KEY).await;
    server.catalog.reload().await.unwrap();
    spec.model = "tablet";
    server
        .post_serial(&body(&spec, &dev))
        .await
        .assert_error(403, "model-not-allowed");
    spec.model = "kiosk";
    server
        .post_serial(&body(&spec, &dev))
        .await
        .assert_error(409, "no-signing-policy");

    // Model assertion signed by a key the trust database does not know.
    let spec = ReqSpec::new(&rid);
    let untrusted = model_assertion_signed_by(BRAND, MODEL, &TestKey::store());
    server
        .post_serial(&stream(&[&serial_request(&spec, &dev), &untrusted]))
        .await
        .assert_error(400, "invalid-model");
    // The model assertion is for another model than the serial-request.
    server
        .post_serial(&stream(&[
            &serial_request(&spec, &dev),
            &model_assertion("kiosk"),
        ]))
        .await
        .assert_error(400, "invalid-model");

    // Disabled model.
    store
        .update_model(
            BRAND,
            MODEL,
            &ModelChange {
                enabled: Some(false),
                ..ModelChange::default()
            },
            &admin(),
        )
        .await
        .unwrap();
    server.catalog.reload().await.unwrap();
    server
        .post_serial(&body(&spec, &dev))
        .await
        .assert_error(403, "model-not-allowed");
    assert_eq!(server.logged().await, 0);
}

#[sqlx::test]
async fn exact_replay_gets_the_identical_serial_and_request_ids_are_single_use(pool: PgPool) {
    let (_token, server) = setup(pool).await;
    let dev = device_key("a", 4096);
    let other = device_key("b", 4096);
    let rid = server.request_id().await;
    let b = body(&ReqSpec::new(&rid), &dev);
    let first = server.post_serial(&b).await;
    check_serial(&first, &dev, MODEL, true);
    let again = server.post_serial(&b).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(
        first.assertions()[0].encode(),
        again.assertions()[0].encode(),
        "a replay answers the same serial"
    );
    // Same request-id, another device key.
    server
        .post_serial(&body(&ReqSpec::new(&rid), &other))
        .await
        .assert_error(409, "request-id-used");
    assert_eq!(server.logged().await, 1);

    // Same request-id and device key, but not the same request: another model, or a
    // proposed serial the earlier one is not. The earlier serial would answer a question the
    // device did not ask, so both are refused, and nothing new is issued.
    create_model(&server.store, "pc-2", API_KEY).await;
    server
        .store
        .create_serial_policy(BRAND, "pc-2", KEY_NAME, &admin())
        .await
        .unwrap();
    server.catalog.reload().await.unwrap();
    let mut spec = ReqSpec::new(&rid);
    spec.model = "pc-2";
    let b2 = stream(&[&serial_request(&spec, &dev), &model_assertion("pc-2")]);
    server
        .post_serial(&b2)
        .await
        .assert_error(409, "request-id-used");
    let mut spec = ReqSpec::new(&rid);
    spec.serial = Some("not-the-earlier-one");
    server
        .post_serial(&body(&spec, &dev))
        .await
        .assert_error(409, "request-id-used");
    assert_eq!(server.logged().await, 1);
    // The exact request still gets its serial.
    let third = server.post_serial(&b).await;
    assert_eq!(third.status, 200, "{}", third.text());
    assert_eq!(
        first.assertions()[0].encode(),
        third.assertions()[0].encode()
    );
}

#[sqlx::test]
async fn duplicate_serial_refused_then_reissued_by_policy(pool: PgPool) {
    let (_token, server) = setup(pool).await;
    let dev = device_key("a", 4096);
    let other = device_key("b", 4096);

    let rid = server.request_id().await;
    let mut spec = ReqSpec::new(&rid);
    spec.serial = Some("dup-1");
    let first = check_serial(
        &server.post_serial(&body(&spec, &dev)).await,
        &dev,
        MODEL,
        true,
    );
    assert_eq!(first.serial(), "dup-1");

    // The same device asking again with a new request-id gets the same serial.
    let rid2 = server.request_id().await;
    let mut spec2 = ReqSpec::new(&rid2);
    spec2.serial = Some("dup-1");
    let same = server.post_serial(&body(&spec2, &dev)).await;
    assert_eq!(same.status, 200, "{}", same.text());
    assert_eq!(same.assertions()[0].encode(), first.encode());

    // Another device: refused by default.
    let rid3 = server.request_id().await;
    let mut spec3 = ReqSpec::new(&rid3);
    spec3.serial = Some("dup-1");
    server
        .post_serial(&body(&spec3, &other))
        .await
        .assert_error(409, "duplicate-serial");
    assert_eq!(server.logged().await, 1);

    // The policy allows re-issue: a new revision for the new device key.
    server
        .store
        .update_model(
            BRAND,
            MODEL,
            &ModelChange {
                duplicate_policy: Some(DuplicatePolicy::Reissue),
                ..ModelChange::default()
            },
            &admin(),
        )
        .await
        .unwrap();
    server.catalog.reload().await.unwrap();
    let reissued = check_serial(
        &server.post_serial(&body(&spec3, &other)).await,
        &other,
        MODEL,
        true,
    );
    assert_eq!(reissued.serial(), "dup-1");
    assert_eq!(reissued.revision(), 1);
    assert_eq!(server.logged().await, 2);
}

/// A provisioned server whose store reaches Postgres through a proxy the test can cut.
async fn behind_a_proxy(pool: &PgPool) -> (Token, PgProxy, Server) {
    let token = Token::new();
    provision(&Store::from_pool(pool.clone()), &token.key_id).await;
    let proxy = PgProxy::start(pg_addr(pool)).await;
    let via = Store::from_pool(pool_via(pool, &proxy).await);
    let server = start(config(&token), via, token.backend().await).await;
    (token, proxy, server)
}

#[sqlx::test]
async fn postgres_unreachable_means_503_and_no_serial(pool: PgPool) {
    let (_token, proxy, server) = behind_a_proxy(&pool).await;
    let dev = device_key("a", 4096);
    // Request-ids need no database.
    let rid = server.request_id().await;
    proxy.cut();
    let a = server.post_serial(&body(&ReqSpec::new(&rid), &dev)).await;
    a.assert_error(503, "database-unavailable");
    assert!(!a.text().contains("serial:"), "{}", a.text());
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM signing_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[sqlx::test]
async fn after_a_postgres_failure_requests_are_refused_at_once_until_it_answers(pool: PgPool) {
    let (_token, proxy, server) = behind_a_proxy(&pool).await;
    let dev = device_key("a", 4096);
    let rid = server.request_id().await;
    proxy.cut();
    // The first request finds Postgres gone: refused by the gate when the watchdog's probe
    // saw it first, else its commit, stuck in the pool's connect retries, is answered when
    // the probe sees it (not after the pool's wait).
    let asked = std::time::Instant::now();
    let a = server.post_serial(&body(&ReqSpec::new(&rid), &dev)).await;
    println!("first request refused in {:?}", asked.elapsed());
    a.assert_error(503, "database-unavailable");
    // The next is refused by the gate, before its signature: the log is known down.
    let rid2 = server.request_id().await;
    let asked = std::time::Instant::now();
    let b = server.post_serial(&body(&ReqSpec::new(&rid2), &dev)).await;
    // Printed, not asserted (shared 2-core machines): what a measurement reads from the run.
    println!("refused by the gate in {:?}", asked.elapsed());
    b.assert_error(503, "database-unavailable");
    assert!(
        b.text().contains("Postgres does not answer"),
        "{}",
        b.text()
    );
    // Postgres back on the same address: the probe lifts the gate without a restart.
    let _proxy = PgProxy::restart(proxy, pg_addr(&pool)).await;
    let back = std::time::Instant::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let served = loop {
        let a = server.post_serial(&body(&ReqSpec::new(&rid2), &dev)).await;
        if a.status == 200 {
            break a;
        }
        a.assert_error(503, "database-unavailable");
        assert!(
            std::time::Instant::now() < deadline,
            "still refused: {}",
            a.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("served again {:?} after Postgres came back", back.elapsed());
    check_serial(&served, &dev, MODEL, true);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM signing_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1, "only the served serial was logged");
}

#[sqlx::test]
async fn hsm_down_means_503(pool: PgPool) {
    let Some(client) = softhsm::p11_kit_client_module() else {
        eprintln!("p11-kit-client.so not installed; skipping");
        return;
    };
    let token = Token::new();
    let mut p11 =
        softhsm::P11KitServer::start(&token.softhsm, TOKEN, token.softhsm.path("p11.sock"));
    p11.export_address();
    let store = Store::from_pool(pool);
    provision(&store, &token.key_id).await;
    let mut cfg = token.hsm_config();
    cfg.module = client;
    let hsm = serialmint::hsm::Hsm::open(cfg)
        .await
        .expect("token opens via p11-kit");
    let backend = std::sync::Arc::new(serialmint::wiring::LazyHsm::open(hsm));
    let server = start(config(&token), store, backend).await;
    let dev = device_key("a", 4096);

    // Up: a serial.
    let rid = server.request_id().await;
    check_serial(
        &server.post_serial(&body(&ReqSpec::new(&rid), &dev)).await,
        &dev,
        MODEL,
        true,
    );
    // Down: 503, nothing logged.
    p11.kill();
    let rid = server.request_id().await;
    let a = server.post_serial(&body(&ReqSpec::new(&rid), &dev)).await;
    assert_eq!(a.status, 503, "{}", a.text());
    let code = a.json()["error_list"][0]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    a.assert_error(503, &code);
    assert!(
        ["hsm-unavailable", "signing-timeout"].contains(&code.as_str()),
        "{code}"
    );
    assert!(!a.text().contains(PIN));
    assert_eq!(server.logged().await, 1);
}

/// A `p11-kit server` that stops answering (SIGSTOP, its connections killed): the HSM
/// layer's calls into it hang and are abandoned after the call timeout; devices get a quick
/// 503 meanwhile, and once a fresh server listens on the same socket, serials come back by
/// themselves while the abandoned calls stay stuck on the stopped one.
#[sqlx::test]
async fn hsm_down_by_a_stalled_p11kit_server_means_503_until_a_fresh_one_serves(pool: PgPool) {
    let Some(client) = softhsm::p11_kit_client_module() else {
        eprintln!("p11-kit-client.so not installed; skipping");
        return;
    };
    let token = Token::new();
    let stalled =
        softhsm::P11KitServer::start(&token.softhsm, TOKEN, token.softhsm.path("p11.sock"));
    stalled.export_address();
    let store = Store::from_pool(pool);
    provision(&store, &token.key_id).await;
    let mut cfg = token.hsm_config();
    cfg.module = client;
    cfg.call_timeout = Duration::from_secs(2);
    let hsm = serialmint::hsm::Hsm::open(cfg)
        .await
        .expect("token opens via p11-kit");
    let backend = std::sync::Arc::new(serialmint::wiring::LazyHsm::open(hsm.clone()));
    let server = start(config(&token), store, backend).await;
    let dev = device_key("a", 4096);
    let rid = server.request_id().await;
    check_serial(
        &server.post_serial(&body(&ReqSpec::new(&rid), &dev)).await,
        &dev,
        MODEL,
        true,
    );

    stalled.stop();
    stalled.kill_connections();
    let rid = server.request_id().await;
    let a = server.post_serial(&body(&ReqSpec::new(&rid), &dev)).await;
    assert_eq!(a.status, 503, "{}", a.text());
    // Recovery's calls into the stopped server are abandoned one after another.
    let start_wait = std::time::Instant::now();
    while hsm.health().tokens[0].abandoned_calls < 1 {
        assert!(
            start_wait.elapsed() < Duration::from_secs(40),
            "no abandoned call: {:?}",
            hsm.health()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rid = server.request_id().await;
    let t = std::time::Instant::now();
    let a = server.post_serial(&body(&ReqSpec::new(&rid), &dev)).await;
    a.assert_error(503, "hsm-unavailable");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert!(!a.text().contains(PIN));
    assert_eq!(server.logged().await, 1);

    let fresh = softhsm::P11KitServer::start(&token.softhsm, TOKEN, stalled.socket.clone());
    let restarted = std::time::Instant::now();
    loop {
        let rid = server.request_id().await;
        let a = server.post_serial(&body(&ReqSpec::new(&rid), &dev)).await;
        if a.status == 200 {
            check_serial(&a, &dev, MODEL, true);
            break;
        }
        assert_eq!(a.status, 503, "{}", a.text());
        assert!(
            restarted.elapsed() < Duration::from_secs(40),
            "no serial within 40 s of the fresh server: {:?}",
            hsm.health()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.logged().await, 2);
    assert!(
        hsm.health().tokens[0].stuck_calls >= 1,
        "{:?}",
        hsm.health()
    );
    drop(fresh);
}

#[sqlx::test]
async fn hsm_not_open_at_start_means_503(pool: PgPool) {
    let token = Token::new();
    let store = Store::from_pool(pool);
    provision(&store, &token.key_id).await;
    let mut cfg = token.hsm_config();
    cfg.tokens[0].label = "no-such-token".into();
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    let slot =
        serialmint::wiring::LazyHsm::open_or_retry(cfg, Duration::from_secs(3600), async move {
            let _ = rx.await;
        })
        .await;
    assert!(slot.get().is_none());
    let server = start(config(&token), store, slot).await;
    let dev = device_key("a", 4096);
    let rid = server.request_id().await;
    let a = server.post_serial(&body(&ReqSpec::new(&rid), &dev)).await;
    a.assert_error(503, "hsm-unavailable");
    assert!(!a.text().contains(PIN));
    assert_eq!(server.logged().await, 0);
}

#[sqlx::test]
async fn two_instances_share_request_ids_and_issue_once(pool: PgPool) {
    // Two device planes (each its own catalog, signer, group commit and request-id state from
    // the store) on one database and one token, as two processes would be.
    let token = Token::new();
    let store = Store::from_pool(pool.clone());
    provision(&store, &token.key_id).await;
    let backend = token.backend().await;
    let a = start(config(&token), store.clone(), backend.clone()).await;
    let b = start(config(&token), Store::from_pool(pool), backend).await;
    let dev = device_key("a", 4096);
    let other = device_key("b", 4096);

    // A request-id from one instance is accepted by the other, both ways.
    let rid = a.request_id().await;
    check_serial(
        &b.post_serial(&body(&ReqSpec::new(&rid), &dev)).await,
        &dev,
        MODEL,
        true,
    );
    let rid = b.request_id().await;
    check_serial(
        &a.post_serial(&body(&ReqSpec::new(&rid), &other)).await,
        &other,
        MODEL,
        true,
    );
    assert_eq!(a.logged().await, 2);

    // The same request sent to both at once (no proposed serial, so each instance would
    // generate its own): one issuance, both answers the same serial.
    for _ in 0..3 {
        let rid = a.request_id().await;
        let req = body(&ReqSpec::new(&rid), &dev);
        let (x, y) = tokio::join!(a.post_serial(&req), b.post_serial(&req));
        let sx = check_serial(&x, &dev, MODEL, true);
        let sy = check_serial(&y, &dev, MODEL, true);
        assert_eq!(sx.encode(), sy.encode());
    }
    assert_eq!(a.logged().await, 5);
}
