//! Role-scoped signing keys: account-keys with `constraints` (format 1), signed by snapd's test
//! root and pushed through the admin API over HTTP, with a real Postgres (a fresh database
//! per test) and, for signing, a real SoftHSM token.
//!
//! - the trust database refuses what a constrained key signs outside its roles, with snapd's
//!   message (`Database.Check`);
//! - `list keys` shows each key's roles (`not registered`, `any`, the constraints);
//! - a serial policy naming a key whose roles do not admit the model is a 409;
//! - a key whose constraints were pushed after its policy never signs outside them: the
//!   catalog refuses a model outside them, and the built serial is matched right before it
//!   is signed (409 `key-role-refused`, counted in `serials_refused_total`).
//!
//! Run with `cargo nextest run` (one process per test: SoftHSM is process-wide).

#[path = "common/admin.rs"]
mod admin;
mod common;
#[path = "common/device.rs"]
mod device;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use serialmint::admin_api::{AdminApi, HsmBackend};
use serialmint::assertion::{
    AccountKey, AssertionType, Model, RsaPublicKey, SerialBuilder, SerialRequest, decode,
};
use serialmint::hsm::Hsm;
use serialmint::http::{self, Limits};
use serialmint::store::{Actor, Role, Store};
use serialmint::wiring::LazyHsm;
use sqlx::PgPool;
use time::OffsetDateTime;

use admin::account_key_revision;
use common::{TestKey, account_assertion, test_trust};
use device::*;

/// Serials of models `foo-*`, and system users.
const FOO_SERIALS_AND_USERS: &str = "
  -
    headers:
      type: serial
      model: foo-.*
  -
    headers:
      type: system-user";

/// A serial of `brand`/`model` numbered `serial` for a fresh device, signed in software by
/// `signer` for `brand`.
fn serial_signed_by(signer: &TestKey, brand: &str, model: &str, serial: &str) -> Vec<u8> {
    let dev = device_key("role-dev", 4096);
    let spec = ReqSpec {
        brand,
        model,
        request_id: "rid",
        serial: Some(serial),
        body: "",
    };
    let req = SerialRequest::try_from(decode(&serial_request(&spec, &dev)).unwrap()).unwrap();
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let content = SerialBuilder::from_request(&req, serial, now)
        .content(&signer.public.key_id())
        .unwrap();
    signer.sign(&content, now.unix_timestamp() as u32)
}

#[test]
fn the_trust_database_refuses_what_a_key_signs_outside_its_roles() {
    let line = TestKey::load("developer1.pk8");
    let ak_text = account_key_revision(
        "testrootorg",
        "line-1",
        &line.public,
        Some(FOO_SERIALS_AND_USERS),
        0,
    );
    let ak = AccountKey::try_from(decode(ak_text.as_bytes()).unwrap()).unwrap();
    assert_eq!(ak.format(), 1);
    assert_eq!(
        ak.constraints().unwrap().to_string(),
        "serial model=foo-.*; system-user"
    );
    let now = OffsetDateTime::now_utc();
    let db = test_trust()
        .with_admitted([ak.into_inner()], now)
        .expect("a format 1 account-key with constraints is admitted");

    let inside = decode(&serial_signed_by(&line, "testrootorg", "foo-1", "A1")).unwrap();
    db.check(&inside, now)
        .expect("a serial of foo-1 is in role");
    let model = Model::try_from(decode(&model_assertion("foo-1")).unwrap()).unwrap();
    db.check_serial_with_model(&inside, &model, now).unwrap();

    let outside = decode(&serial_signed_by(&line, "testrootorg", "bar", "A2")).unwrap();
    assert_eq!(
        db.check(&outside, now).unwrap_err().to_string(),
        format!(
            "assertion does not match signing constraints for public key {:?} from \"testrootorg\"",
            line.public.key_id()
        )
    );
}

/// The admin API in this process over `store`, verifying pushes against the test root with
/// the real backend (`hsm` may be empty: pushes need no HSM).
async fn admin_api(store: &Store, hsm: Arc<LazyHsm>) -> (SocketAddr, String) {
    let token = store
        .create_token("admin", Role::Admin, None, &Actor::bootstrap())
        .await
        .unwrap()
        .secret;
    let catalog = serialmint::catalog::Catalog::with_trust(store.clone(), test_trust());
    catalog.reload().await.unwrap();
    let api = AdminApi::new(
        store.clone(),
        catalog,
        Arc::new(HsmBackend::new(hsm, test_trust())),
        None,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(http::serve(
        listener,
        api,
        Limits::default(),
        std::future::pending::<()>(),
    ));
    (addr, token)
}

/// One admin request with the token.
async fn admin(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Answer {
    let auth = format!("Bearer {token}");
    request(
        addr,
        method,
        path,
        &[("authorization", &auth), ("content-type", content_type)],
        body,
    )
    .await
}

async fn push(addr: SocketAddr, token: &str, text: &str) -> Answer {
    admin(
        addr,
        token,
        "POST",
        "/v1/account-keys",
        "application/x.ubuntu.assertion",
        text.as_bytes(),
    )
    .await
}

async fn create_policy(addr: SocketAddr, token: &str, model: &str, key: &str) -> Answer {
    let body = serde_json::to_vec(&json!({ "key": key })).unwrap();
    admin(
        addr,
        token,
        "POST",
        &format!("/v1/models/{model}/serial-policies"),
        "application/json",
        &body,
    )
    .await
}

/// The roles `GET /v1/keys` shows, by key name.
async fn roles(addr: SocketAddr, token: &str) -> Vec<(String, String)> {
    let a = admin(addr, token, "GET", "/v1/keys", "application/json", b"").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v: Value = a.json();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap().to_owned(),
                k["roles"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A ready key named `name` of the brand with `public`, as the store records a generated one.
async fn add_key(store: &Store, name: &str, public: &RsaPublicKey) {
    let actor = Actor::bootstrap();
    store
        .create_pending_key(name, BRAND, &[], "*", &actor)
        .await
        .unwrap();
    store
        .mark_key_ready(name, &public.key_id(), &public.encode(), &actor)
        .await
        .unwrap();
}

#[sqlx::test]
async fn keys_show_their_roles_and_policies_outside_them_are_refused(pool: PgPool) {
    let store = Store::from_pool(pool);
    store.ensure_brand(BRAND, &admin_actor()).await.unwrap();
    let line = TestKey::load("developer1.pk8");
    let plain = TestKey::store();
    add_key(&store, "line-1", &line.public).await;
    add_key(&store, "plain", &plain.public).await;
    create_model(&store, "foo-1", "foo-api-key-0123456789").await;
    create_model(&store, "bar", "bar-api-key-0123456789").await;
    let (addr, token) = admin_api(&store, Arc::new(LazyHsm::empty("no HSM here"))).await;

    let mut shown = roles(addr, &token).await;
    shown.sort();
    assert_eq!(
        shown,
        [
            ("line-1".to_owned(), "not registered".to_owned()),
            ("plain".to_owned(), "not registered".to_owned())
        ]
    );

    // Malformed constraints are refused with snapd's message; nothing is stored.
    let bad = account_key_revision(
        BRAND,
        "line-1",
        &line.public,
        Some("\n  -\n    headers:\n      type: preseed|model"),
        0,
    );
    let a = push(addr, &token, &bad).await;
    a.assert_error(400, "refused-assertion");
    assert!(
        a.text()
            .contains("type header constraint must be a precise string and not a regexp"),
        "{}",
        a.text()
    );
    let format0 = account_key_revision(
        BRAND,
        "line-1",
        &line.public,
        Some(FOO_SERIALS_AND_USERS),
        0,
    )
    .replace("format: 1\n", "");
    let a = push(addr, &token, &format0).await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(
        a.text()
            .contains("format set to 0 lower than min format 1 covering included features"),
        "{}",
        a.text()
    );
    assert!(store.account_assertions().await.unwrap().is_empty());

    // A genuine account-key with constraints, and one without.
    let stream = format!(
        "{}\n{}\n{}",
        account_assertion(&TestKey::root(), BRAND),
        account_key_revision(
            BRAND,
            "line-1",
            &line.public,
            Some(FOO_SERIALS_AND_USERS),
            0
        ),
        account_key_revision(BRAND, "plain", &plain.public, None, 0),
    );
    let a = push(addr, &token, &stream).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let mut shown = roles(addr, &token).await;
    shown.sort();
    assert_eq!(
        shown,
        [
            (
                "line-1".to_owned(),
                "serial model=foo-.*; system-user".to_owned()
            ),
            ("plain".to_owned(), "any".to_owned())
        ]
    );

    // A model outside the regexp: 409 naming the constraints; nothing recorded.
    let a = create_policy(addr, &token, "bar", "line-1").await;
    a.assert_error(409, "key-role-refused");
    let message = a.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("\"line-1\"")
            && message.contains("testrootorg/bar")
            && message.contains("(serial model=foo-.*; system-user)"),
        "{message}"
    );
    assert!(
        store
            .serial_policies(None, Some("bar"))
            .await
            .unwrap()
            .is_empty()
    );
    // Inside it, and a key without constraints anywhere: 201.
    let a = create_policy(addr, &token, "foo-1", "line-1").await;
    assert_eq!(a.status, 201, "{}", a.text());
    let a = create_policy(addr, &token, "bar", "plain").await;
    assert_eq!(a.status, 201, "{}", a.text());
}

fn admin_actor() -> Actor {
    Actor::bootstrap()
}

#[sqlx::test]
async fn a_serial_outside_constraints_pushed_after_its_policy_is_never_signed(pool: PgPool) {
    let metrics = serialmint::server::metrics_handle().expect("a metrics recorder");
    let token = Token::new();
    // A second key on the token, for a production line.
    let line_id = token.softhsm.import_key(
        TOKEN,
        PIN,
        Path::new(&format!("{}/developer1.pk8", common::FIX)),
        "line-1",
    );
    let line = TestKey::load("developer1.pk8");
    assert_eq!(line_id, line.public.key_id());

    let store = Store::from_pool(pool);
    provision(&store, &token.key_id).await;
    add_key(&store, "line-1", &line.public).await;
    let hsm = Arc::new(LazyHsm::open(Hsm::open(token.hsm_config()).await.unwrap()));
    let (admin_addr, admin_token) = admin_api(&store, hsm.clone()).await;
    // The policy comes first, while the key has no account-key (so no roles to check).
    let a = create_policy(admin_addr, &admin_token, MODEL, "line-1").await;
    assert_eq!(a.status, 201, "{}", a.text());
    let server = start(config(&token), store.clone(), hsm.clone()).await;

    let dev = device_key("a", 4096);
    let ask = |serial: &'static str| {
        let server = &server;
        let dev = &dev;
        async move {
            let rid = server.request_id().await;
            let mut spec = ReqSpec::new(&rid);
            spec.serial = Some(serial);
            server.post_serial(&body(&spec, dev)).await
        }
    };
    let a = ask("X-1").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.assertions()[0].sign_key_id(), line_id);

    // Then the store registers the key for serials numbered SN-* only.
    let serials_sn = "
  -
    headers:
      type: serial
      model: pc
      serial: SN-.*";
    let a = push(
        admin_addr,
        &admin_token,
        &account_key_revision(BRAND, "line-1", &line.public, Some(serials_sn), 0),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    server.catalog.reload().await.unwrap();

    // The catalog cannot tell from the model alone; the built serial is refused before it
    // is signed, and nothing is logged.
    let logged = server.logged().await;
    let a = ask("X-2").await;
    a.assert_error(409, "key-role-refused");
    assert!(a.text().contains("serial=SN-.*"), "{}", a.text());
    assert_eq!(server.logged().await, logged);
    // In role: signed, and a device with a current snapd accepts it.
    let a = ask("SN-1").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let all = a.assertions();
    assert_eq!(all[0].header_str("serial"), Some("SN-1"));
    let ak = all
        .iter()
        .find(|x| x.kind() == AssertionType::AccountKey)
        .expect("the key's account-key follows the serial")
        .clone();
    let now = OffsetDateTime::now_utc();
    let db = test_trust().with_admitted([ak], now).unwrap();
    let model = Model::try_from(decode(&model_assertion(MODEL)).unwrap()).unwrap();
    db.check_serial_with_model(&all[0], &model, now).unwrap();

    // A newer revision limits the key to other models: the catalog refuses at once.
    let a = push(
        admin_addr,
        &admin_token,
        &account_key_revision(
            BRAND,
            "line-1",
            &line.public,
            Some(FOO_SERIALS_AND_USERS),
            1,
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    server.catalog.reload().await.unwrap();
    let a = ask("SN-2").await;
    a.assert_error(409, "key-role-refused");
    assert!(
        a.text().contains("testrootorg/pc") && a.text().contains("model=foo-.*"),
        "{}",
        a.text()
    );
    assert_eq!(server.logged().await, logged + 1);

    let rendered = metrics.render();
    let refused = rendered
        .lines()
        .find(|l| {
            l.starts_with("serials_refused_total")
                && l.contains("reason=\"key-role-refused\"")
                && l.contains("model=\"pc\"")
        })
        .unwrap_or_else(|| panic!("no refusal counted:\n{rendered}"));
    assert!(refused.ends_with(" 2"), "{refused}");
}
