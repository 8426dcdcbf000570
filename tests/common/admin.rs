//! The admin listener in this process over the device-plane harness (`device.rs`): the same
//! SoftHSM token (the brand key `brand-root`, snapd's TestRootPrivKey) and per-test Postgres
//! database, with an admin token; plus more brand keys on that token and account-keys for
//! them signed by the test root (with `constraints` when asked), and the real `serialmint`
//! binary run as a CLI against this listener.
//!
//! Needs `common`, `softhsm` and `device` as sibling modules of the test crate.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use serialmint::admin_api::{AdminApi, HsmBackend};
use serialmint::assertion::headers::parse_headers;
use serialmint::assertion::{self, AssertionType, Headers, RsaPublicKey, build_content};
use serialmint::hsm::Hsm;
use serialmint::http::{self, Limits};
use serialmint::store::{AssertionKind, NewAccountAssertion, Role};
use serialmint::wiring::LazyHsm;
use time::OffsetDateTime;

use crate::common::{FIX, TestKey, test_trust};
use crate::device::{Answer, BRAND, PIN, Server, TOKEN, Token, admin, request};

/// An admin listener and its admin token.
pub struct Admin {
    pub addr: SocketAddr,
    pub secret: String,
}

impl Admin {
    /// The admin API over `server`'s store and catalog and `token`, as `serve` runs it.
    pub async fn start(server: &Server, token: &Token) -> Admin {
        let store = server.store.clone();
        let secret = store
            .create_token("operator", Role::Admin, None, &admin())
            .await
            .unwrap()
            .secret;
        let slot = Arc::new(LazyHsm::open(Hsm::open(token.hsm_config()).await.unwrap()));
        let api = AdminApi::new(
            store,
            server.catalog.clone(),
            Arc::new(HsmBackend::new(slot, test_trust())),
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
        Admin { addr, secret }
    }

    /// POSTs `body` as JSON to `path` with the admin token.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Answer {
        let auth = format!("Bearer {}", self.secret);
        request(
            self.addr,
            "POST",
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
        .await
    }

    /// GETs `path` with the admin token.
    pub async fn get(&self, path: &str) -> Answer {
        let auth = format!("Bearer {}", self.secret);
        request(self.addr, "GET", path, &[("authorization", &auth)], b"").await
    }

    /// Runs the real `serialmint` binary with `args` against this listener (on a blocking
    /// thread: the listener answers on this test's runtime meanwhile).
    pub async fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_serialmint"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SERIALMINT_ADMIN_URL", format!("http://{}", self.addr))
            .env("SERIALMINT_ADMIN_TOKEN", &self.secret);
        tokio::task::spawn_blocking(move || cmd.output().expect("serialmint runs"))
            .await
            .unwrap()
    }
}

/// Imports the PKCS#8 fixture `fixture` onto `token` as brand key `name` of `brand` (ready in
/// the store); returns its public key.
pub async fn add_key(
    server: &Server,
    token: &Token,
    brand: &str,
    name: &str,
    fixture: &str,
) -> RsaPublicKey {
    let id = token
        .softhsm
        .import_key(TOKEN, PIN, Path::new(&format!("{FIX}/{fixture}")), name);
    let public = TestKey::load(fixture).public;
    assert_eq!(id, public.key_id());
    server.store.ensure_brand(brand, &admin()).await.unwrap();
    server
        .store
        .create_pending_key(name, brand, &[], "*", &admin())
        .await
        .unwrap();
    server
        .store
        .mark_key_ready(name, &id, &public.encode(), &admin())
        .await
        .unwrap();
    public
}

/// The `account-key` of `public` for `account_id`, named `name`, signed by the test root as
/// `testrootorg`; with `constraints` (the indented lines after `constraints:`) it is format 1.
pub fn account_key(
    account_id: &str,
    name: &str,
    public: &RsaPublicKey,
    constraints: Option<&str>,
) -> String {
    account_key_revision(account_id, name, public, constraints, 0)
}

/// [`account_key`] at `revision`.
pub fn account_key_revision(
    account_id: &str,
    name: &str,
    public: &RsaPublicKey,
    constraints: Option<&str>,
    revision: u32,
) -> String {
    let root = TestKey::root();
    let now = OffsetDateTime::now_utc();
    let since = assertion::time::format_utc(now - time::Duration::minutes(5));
    let mut h = Headers::new();
    h.insert("authority-id".into(), "testrootorg".into());
    h.insert("account-id".into(), account_id.into());
    h.insert("name".into(), name.into());
    h.insert("public-key-sha3-384".into(), public.key_id().into());
    h.insert("since".into(), since.into());
    if revision > 0 {
        h.insert("revision".into(), revision.to_string().into());
    }
    if let Some(block) = constraints {
        let parsed = parse_headers(format!("constraints:{block}").as_bytes()).unwrap();
        h.insert("format".into(), "1".into());
        h.insert("constraints".into(), parsed["constraints"].clone());
    }
    let content = build_content(
        AssertionType::AccountKey,
        &h,
        &public.encode(),
        &root.public.key_id(),
    )
    .unwrap();
    String::from_utf8(root.sign(&content, now.unix_timestamp() as u32)).unwrap()
}

/// Stores `text` as the pushed account-key of `public` (of `account_id`).
pub async fn push_account_key(
    server: &Server,
    account_id: &str,
    public: &RsaPublicKey,
    text: &str,
) {
    server
        .store
        .put_account_assertions(
            &[NewAccountAssertion {
                kind: AssertionKind::AccountKey,
                primary_key: public.key_id(),
                account_id: account_id.into(),
                revision: 0,
                text: text.into(),
            }],
            &admin(),
        )
        .await
        .unwrap();
}

/// The brand of the harness.
pub const HARNESS_BRAND: &str = BRAND;
