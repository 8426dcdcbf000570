//! The dashboard in a real headless Chromium (Debian's `chromium` through `chromedriver`),
//! against the real `serialmint serve` on a SoftHSM token and a fresh Postgres database:
//! signing in, the overview updating while devices register, finding a serial, a bad token,
//! a read-only token, a form without its CSRF token. Each test saves screenshots under
//! `target/ui-screenshots/`.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/device.rs"]
mod device;
#[path = "common/serve.rs"]
mod serve;
#[path = "common/softhsm.rs"]
mod softhsm;
#[path = "common/web.rs"]
mod web;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use browser::{Browser, PATIENCE};
use common::TestKey;
use device::*;
use serialmint::store::{Actor, Role, Store};
use serve::Serve;
use sqlx::PgPool;

/// The real server on a provisioned token and database, and an admin and a read-only token.
struct Line {
    serve: Serve,
    base: String,
    admin: String,
    reader: String,
    _token: Token,
}

async fn line(pool: &PgPool) -> Line {
    let token = Token::new();
    let store = Store::from_pool(pool.clone());
    provision(&store, &token.key_id).await;
    let admin = store
        .create_token("operator", Role::Admin, None, &Actor::bootstrap())
        .await
        .unwrap()
        .secret;
    let reader = store
        .create_token("auditor", Role::ReadOnly, None, &Actor::bootstrap())
        .await
        .unwrap()
        .secret;
    let trusted = trust_file(token.softhsm.dir.path());
    let env = serve::env(pool, &token.softhsm, TOKEN, PIN, Some(&trusted), "warn");
    let serve = Serve::start(env);
    let base = serve.admin_url.clone();
    Line {
        serve,
        base,
        admin,
        reader,
        _token: token,
    }
}

/// One device registers (request-id, then serial) with the proposed `serial`.
async fn register(addr: SocketAddr, dev: &TestKey, serial: &str) {
    let a = request(addr, "POST", "/v1/request-id", &[("api-key", API_KEY)], b"").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let rid = a.json()["request-id"].as_str().unwrap().to_owned();
    let spec = ReqSpec {
        serial: Some(serial),
        ..ReqSpec::new(&rid)
    };
    let a = request(
        addr,
        "POST",
        "/v1/serial",
        &[
            ("api-key", API_KEY),
            ("content-type", "application/x.ubuntu.assertion"),
        ],
        &body(&spec, dev),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
}

#[sqlx::test]
async fn an_operator_watches_devices_register_live_and_finds_a_serial(pool: PgPool) {
    let l = line(&pool).await;
    let b = Browser::start("overview").await;
    b.sign_in(&l.base, &l.admin).await;
    b.find("#chart").await;
    assert_eq!(b.text("#who").await, "operator");
    assert_eq!(b.text("#last-hour").await, "0");
    // A marker that a reload would wipe: the figures must change under it.
    b.client
        .execute("window.serialmintMarker = 'kept';", vec![])
        .await
        .unwrap();
    b.screenshot("1-signed-in").await;

    let devices: Vec<TestKey> = ["a", "b", "c"]
        .iter()
        .map(|n| device_key(n, 4096))
        .collect();
    for (i, dev) in devices.iter().enumerate() {
        register(l.serve.device, dev, &format!("DASH-{i:04}")).await;
    }
    let deadline = Instant::now() + PATIENCE;
    while b.text("#last-hour").await != "3" {
        assert!(
            Instant::now() < deadline,
            "the overview never showed the 3 serials:\n{}",
            l.serve.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let marker = b
        .client
        .execute("return window.serialmintMarker || null;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, "kept", "updated in place, not by a reload");
    let today = b.text("#models-today").await;
    assert!(today.contains("pc") && today.contains('3'), "{today}");
    // The token's pool as the server holds it: in rotation, its sessions counted.
    let hsm = b.text("#hsm-tokens").await;
    assert!(
        hsm.contains(" up ") && hsm.contains(" open, ") && hsm.contains(" waiting"),
        "{hsm}"
    );
    // Then its recoveries and its calls stuck in the module (`hsm_calls_stuck`): none.
    let words: Vec<&str> = hsm.split_whitespace().collect();
    assert!(
        hsm.contains("Calls stuck") && words.ends_with(&["waiting", "0", "0"]),
        "{hsm}"
    );
    b.screenshot("2-live").await;

    b.click("a[href='/ui/signing-log']").await;
    b.fill("#f-serial", "DASH-0001").await;
    b.click("#search").await;
    b.wait_for_text("1 serial, newest first").await;
    let results = b.text("#results").await;
    assert!(results.contains("DASH-0001"), "{results}");
    assert!(!results.contains("DASH-0002"), "{results}");
    let export = b.find("#export").await.attr("href").await.unwrap().unwrap();
    assert!(export.contains("serial=DASH-0001"), "{export}");
    b.screenshot("3-search").await;
}

#[sqlx::test]
async fn a_bad_token_is_refused(pool: PgPool) {
    let l = line(&pool).await;
    let b = Browser::start("bad-token").await;
    b.sign_in(&l.base, "smt_certainly-not-a-token").await;
    let problem = b.text("#problem").await;
    assert!(problem.contains("refused"), "{problem}");
    assert!(
        b.client
            .get_named_cookie("serialmint_session")
            .await
            .is_err(),
        "no session"
    );
    b.screenshot("refused").await;
    b.goto(&format!("{}/ui/", l.base)).await;
    b.find("#sign-in-form").await;
}

#[sqlx::test]
async fn a_read_only_token_changes_nothing_and_forms_need_their_csrf_token(pool: PgPool) {
    let l = line(&pool).await;
    let b = Browser::start("read-only").await;
    b.sign_in(&l.base, &l.reader).await;
    b.find("#read-only").await;
    b.screenshot("1-overview").await;
    // Whatever a read-only session posts, with its own CSRF token, is refused.
    b.client
        .execute(
            "const f = document.createElement('form'); f.method = 'post'; \
             f.action = '/ui/models/pc/disable'; \
             f.appendChild(document.querySelector('input[name=csrf]').cloneNode()); \
             document.body.appendChild(f); f.submit();",
            vec![],
        )
        .await
        .unwrap();
    let problem = b.text("#problem").await;
    assert!(problem.starts_with("403"), "{problem}");
    b.screenshot("2-refused").await;

    // A form stripped of its CSRF token is refused, in the browser and over plain HTTP.
    b.goto(&format!("{}/ui/", l.base)).await;
    b.client
        .execute(
            "document.querySelector('#sign-out').form.querySelector('input[name=csrf]').remove();",
            vec![],
        )
        .await
        .unwrap();
    b.click("#sign-out").await;
    b.wait_for_text("CSRF").await;
    b.screenshot("3-no-csrf").await;
    let session = b
        .client
        .get_named_cookie("serialmint_session")
        .await
        .expect("still signed in");
    let cookie = format!("serialmint_session={}", session.value());
    let r = web::exchange(
        l.serve.admin,
        "POST",
        "/ui/sign-out",
        Some(&cookie),
        Some(&[]),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = web::exchange(l.serve.admin, "GET", "/ui/", Some(&cookie), None).await;
    assert_eq!(r.status, 200, "the session survives refused forms");
}

#[sqlx::test]
async fn an_admin_disables_a_model_only_after_confirming(pool: PgPool) {
    let l = line(&pool).await;
    let b = Browser::start("actions").await;
    b.sign_in(&l.base, &l.admin).await;
    b.find("#chart").await;
    b.click("a[href='/ui/models']").await;
    let card = "#model-testrootorg-pc";
    b.find(card).await;
    b.screenshot("1-models").await;
    // A new serial-policy revision with the chosen key, confirmed, made by the session's token.
    b.click(&format!("{card} form[action$='/serial-policy'] button"))
        .await;
    b.client.accept_alert().await.unwrap();
    let notice = b.text("#notice").await;
    assert!(notice.contains("serial-policy revision"), "{notice}");
    let newest = b.text(&format!("{card} tbody tr")).await;
    assert!(
        newest.starts_with('2') && newest.contains(KEY_NAME) && newest.contains("operator"),
        "{newest}"
    );
    // Dismissed: nothing happens.
    b.click(&format!("{card} button.danger")).await;
    let asked = b.client.get_alert_text().await.expect("a confirmation");
    assert!(asked.contains("Disable model pc?"), "{asked}");
    b.client.dismiss_alert().await.unwrap();
    let store = Store::from_pool(pool.clone());
    assert!(store.model("testrootorg", "pc").await.unwrap().enabled);
    // Confirmed: disabled and audited under the token's name.
    b.click(&format!("{card} button.danger")).await;
    b.client.accept_alert().await.unwrap();
    let notice = b.text("#notice").await;
    assert!(notice.contains("disabled"), "{notice}");
    assert!(!store.model("testrootorg", "pc").await.unwrap().enabled);
    b.screenshot("2-disabled").await;
    b.click("a[href='/ui/audit']").await;
    b.wait_for_text("model.update").await;
    let audit = b.text("#audit tbody tr").await;
    assert!(
        audit.contains("operator") && audit.contains("model.update"),
        "{audit}"
    );
    b.screenshot("3-audit").await;
    b.click("a[href='/ui/keys']").await;
    let keys = b.text("#keys").await;
    assert!(
        keys.contains(KEY_NAME) && keys.contains("registered"),
        "{keys}"
    );
}
