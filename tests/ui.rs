//! The dashboard over real HTTP (no browser): sign-in and its session cookie, the security
//! headers, CSRF, roles, revocation, the bad-token throttle and the signing-log search, on a
//! fresh Postgres database per test. The HSM is a stand-in (the dashboard only asks whether it
//! is up); `tests/ui_browser.rs` drives the real server in Chromium.

mod common;
#[path = "common/web.rs"]
mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serialmint::admin_api::{
    AdminApi, AdminLimits, Backend, BackendError, GeneratedKey, Refusal, ThrottleConfig,
};
use serialmint::catalog::Catalog;
use serialmint::http::{self, Limits};
use serialmint::store::{Actor, Issuance, NewAccountAssertion, Role, SigningKey, Store};
use sqlx::PgPool;
use web::{exchange, sign_in, sign_in_reply};

/// The HSM as the dashboard sees it: up, and nothing else.
struct UpBackend;

impl Backend for UpBackend {
    fn generate_key<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<GeneratedKey, BackendError>> {
        Box::pin(async { Err(BackendError::Unavailable("no HSM in this test".into())) })
    }

    fn account_key_request<'a>(
        &'a self,
        _: &'a SigningKey,
    ) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(async { Err(BackendError::Unavailable("no HSM in this test".into())) })
    }

    fn verify_account_assertions(
        &self,
        _: &[u8],
        _: &[String],
    ) -> Result<Vec<NewAccountAssertion>, Refusal> {
        Err(Refusal("no pushes in this test".into()))
    }

    fn hsm_healthy(&self) -> bool {
        true
    }
}

struct Server {
    addr: SocketAddr,
    store: Store,
    admin: String,
    reader: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(pool: PgPool, throttle: ThrottleConfig) -> Server {
    let store = Store::from_pool(pool);
    let actor = Actor::bootstrap();
    store.ensure_brand("acme", &actor).await.unwrap();
    let admin = store
        .create_token("admin", Role::Admin, None, &actor)
        .await
        .unwrap()
        .secret;
    let reader = store
        .create_token("auditor", Role::ReadOnly, None, &actor)
        .await
        .unwrap()
        .secret;
    let catalog = Catalog::new(store.clone());
    catalog.reload().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = AdminLimits {
        throttle,
        ..AdminLimits::default()
    };
    let api = AdminApi::new(
        store.clone(),
        catalog,
        Arc::new(UpBackend),
        serialmint::server::metrics_handle(),
    )
    .with_limits(limits);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve(listener, api, Limits::default(), async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        store,
        admin,
        reader,
        _stop: stop,
    }
}

fn lenient() -> ThrottleConfig {
    ThrottleConfig {
        failures_allowed: 100,
        first_delay: Duration::from_secs(60),
        table_max: 64,
    }
}

#[sqlx::test]
async fn sign_in_opens_a_hardened_session_and_sign_out_ends_it(pool: PgPool) {
    let s = start(pool, lenient()).await;
    // Without a session: to the sign-in page; the JSON answers 401.
    let r = exchange(s.addr, "GET", "/ui/", None, None).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/ui/sign-in"));
    let r = exchange(s.addr, "GET", "/ui/overview.json", None, None).await;
    assert_eq!(r.status, 401);

    let form = exchange(s.addr, "GET", "/ui/sign-in", None, None).await;
    let csp = form.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(form.header("x-frame-options"), Some("DENY"));

    let reply = sign_in_reply(s.addr, &s.admin).await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert_eq!(reply.header("location"), Some("/ui/"));
    let set = reply.set_cookie("serialmint_session").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui/", "Max-Age=28800"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: no Secure");
    let cookie = format!(
        "serialmint_session={}",
        reply.cookie_value("serialmint_session").unwrap()
    );

    let page = exchange(s.addr, "GET", "/ui/", Some(&cookie), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Serials per minute"));
    assert!(page.body.contains(">admin<"), "the token's name is shown");
    assert!(page.header("content-security-policy").is_some());
    assert!(!page.body.contains(&s.admin), "the token is never echoed");
    let json = exchange(s.addr, "GET", "/ui/overview.json", Some(&cookie), None).await;
    assert_eq!(json.status, 200, "{}", json.body);
    let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(v["per_minute"].as_array().unwrap().len(), 60);
    assert_eq!(v["values"]["hsm"], "up");

    let csrf = page.csrf_field().unwrap();
    let out = exchange(
        s.addr,
        "POST",
        "/ui/sign-out",
        Some(&cookie),
        Some(&[("csrf", csrf.as_str())]),
    )
    .await;
    assert_eq!(out.status, 303);
    assert!(
        out.set_cookie("serialmint_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = exchange(s.addr, "GET", "/ui/", Some(&cookie), None).await;
    assert_eq!(r.status, 303, "the session is gone");
}

#[sqlx::test]
async fn forms_without_their_csrf_token_are_refused(pool: PgPool) {
    let s = start(pool, lenient()).await;
    let cookie = sign_in(s.addr, &s.admin).await;
    for form in [&[][..], &[("csrf", "forged")][..]] {
        let r = exchange(s.addr, "POST", "/ui/sign-out", Some(&cookie), Some(form)).await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("CSRF"));
    }
    let r = exchange(s.addr, "GET", "/ui/", Some(&cookie), None).await;
    assert_eq!(r.status, 200, "still signed in");
    // The sign-in form: its field must match its cookie.
    let r = exchange(
        s.addr,
        "POST",
        "/ui/sign-in",
        Some("serialmint_sign_in=abc"),
        Some(&[("csrf", "abd"), ("token", &s.admin)]),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.set_cookie("serialmint_session").is_none());
}

#[sqlx::test]
async fn read_only_and_revoked_tokens(pool: PgPool) {
    let s = start(pool, lenient()).await;
    let cookie = sign_in(s.addr, &s.reader).await;
    let page = exchange(s.addr, "GET", "/ui/", Some(&cookie), None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("read-only"));
    let csrf = page.csrf_field().unwrap();
    let r = exchange(
        s.addr,
        "POST",
        "/ui/models/widget/disable",
        Some(&cookie),
        Some(&[("csrf", csrf.as_str())]),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("read-only"));

    // Revoking the token ends its sessions at the next request.
    let admin_cookie = sign_in(s.addr, &s.admin).await;
    let id = s
        .store
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "auditor")
        .unwrap()
        .id;
    s.store.revoke_token(id, &Actor::bootstrap()).await.unwrap();
    let r = exchange(s.addr, "GET", "/ui/", Some(&cookie), None).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/ui/sign-in"));
    let r = exchange(s.addr, "GET", "/ui/", Some(&admin_cookie), None).await;
    assert_eq!(r.status, 200, "other sessions go on");
}

#[sqlx::test]
async fn bad_tokens_are_refused_and_throttled_like_the_api(pool: PgPool) {
    let s = start(
        pool,
        ThrottleConfig {
            failures_allowed: 2,
            first_delay: Duration::from_secs(600),
            table_max: 64,
        },
    )
    .await;
    for _ in 0..2 {
        let r = sign_in_reply(s.addr, "smt_not-a-token").await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.body.contains("refused"));
        assert!(r.set_cookie("serialmint_session").is_none());
    }
    // Past the allowance the address is shut out, with a good token too, here and in the API.
    let r = sign_in_reply(s.addr, &s.admin).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    let (status, _) = common_get(s.addr, "/v1/models", &s.admin).await;
    assert_eq!(status, 429);
}

/// A bearer-token GET on the JSON API: its status.
async fn common_get(addr: SocketAddr, path: &str, token: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    (out[9..12].parse().unwrap(), out)
}

#[sqlx::test]
async fn the_signing_log_search_finds_a_serial_and_exports_the_same_filter(pool: PgPool) {
    let s = start(pool, lenient()).await;
    let model = serialmint::store::NewModel {
        brand_id: "acme".into(),
        name: "widget".into(),
        api_key: "k".repeat(43),
        rate_limit_per_sec: None,
        rate_limit_burst: None,
        duplicate_policy: Default::default(),
        serial_generation: Default::default(),
        serial_prefix: String::new(),
    };
    let model = s
        .store
        .create_model(&model, &Actor::bootstrap())
        .await
        .unwrap();
    let rows: Vec<Issuance> = (0..120)
        .map(|i| Issuance {
            brand_id: "acme".into(),
            model_id: model.id,
            model_name: "widget".into(),
            serial: format!("SN{i:04}"),
            revision: 0,
            device_key_id: format!("devkey{i}"),
            request_id: format!("req{i:04}"),
            signing_key_id: "key".into(),
            instance: "t".into(),
            serial_assertion: format!("type: serial\nserial: SN{i:04}\n"),
            original_serial: None,
            original_serial_id: None,
        })
        .collect();
    s.store.record_issuances(&rows).await.unwrap();
    let cookie = sign_in(s.addr, &s.reader).await;

    let r = exchange(
        s.addr,
        "GET",
        "/ui/signing-log?model=widget&serial=SN0042&device-key=&since=&until=",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(">SN0042<"));
    assert!(!r.body.contains(">SN0043<"));
    assert!(
        r.body
            .contains("export.csv?format=csv&amp;model=widget&amp;serial=SN0042")
    );

    let r = exchange(
        s.addr,
        "GET",
        "/ui/signing-log?device-key=devkey7",
        Some(&cookie),
        None,
    )
    .await;
    assert!(
        r.body.contains(">SN0007<") && !r.body.contains(">SN0017<"),
        "{}",
        r.body
    );

    // Paged: 50 a page, newest first, then older.
    let r = exchange(s.addr, "GET", "/ui/signing-log", Some(&cookie), None).await;
    assert!(r.body.contains(">SN0119<") && !r.body.contains(">SN0069<"));
    let marker = "id=\"older\" href=\"";
    let at = r.body.find(marker).unwrap() + marker.len();
    let older = r.body[at..][..r.body[at..].find('"').unwrap()].replace("&amp;", "&");
    let r = exchange(s.addr, "GET", &older, Some(&cookie), None).await;
    assert!(
        r.body.contains(">SN0069<") && !r.body.contains(">SN0070<"),
        "{older}"
    );

    // A datetime-local from the browser is read as UTC; a range in the future finds nothing.
    let r = exchange(
        s.addr,
        "GET",
        "/ui/signing-log?since=2999-01-01T00%3A00",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("No serial matches"));

    let csv = exchange(
        s.addr,
        "GET",
        "/ui/signing-log/export.csv?serial=SN0042",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv.body.contains("SN0042") && !csv.body.contains("SN0043"));
}

async fn widget(s: &Server) {
    let model = serialmint::store::NewModel {
        brand_id: "acme".into(),
        name: "widget".into(),
        api_key: "widget-api-key-0123456789".into(),
        rate_limit_per_sec: None,
        rate_limit_burst: None,
        duplicate_policy: Default::default(),
        serial_generation: Default::default(),
        serial_prefix: String::new(),
    };
    s.store
        .create_model(&model, &Actor::bootstrap())
        .await
        .unwrap();
}

#[sqlx::test]
async fn admin_actions_are_audited_under_the_token_name(pool: PgPool) {
    let s = start(pool, lenient()).await;
    widget(&s).await;
    let cookie = sign_in(s.addr, &s.admin).await;
    let page = exchange(s.addr, "GET", "/ui/models", Some(&cookie), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("widg… (25 characters)"),
        "the API key is masked"
    );
    assert!(!page.body.contains("widget-api-key-0123456789"));
    assert!(page.body.contains("data-confirm=\"Disable model widget?"));
    assert!(!page.body.contains("Remodel policies"), "none yet");
    s.store
        .create_remodel_policy(
            "acme",
            &serialmint::store::NewRemodelPolicy {
                from_brand_id: "acme".into(),
                from_model: "gadget-v1".into(),
                to_model: "widget".into(),
                serial_pattern: Some("W[0-9]+".into()),
            },
            &Actor::bootstrap(),
        )
        .await
        .unwrap();
    let page = exchange(s.addr, "GET", "/ui/models", Some(&cookie), None).await;
    assert!(page.body.contains("Remodel policies"), "{}", page.body);
    assert!(page.body.contains("acme / gadget-v1"));
    assert!(page.body.contains("<code>W[0-9]+</code>"));
    let csrf = page.csrf_field().unwrap();

    let r = exchange(
        s.addr,
        "POST",
        "/ui/models/acme/widget/disable",
        Some(&cookie),
        Some(&[("csrf", csrf.as_str())]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/ui/models?done=disabled"));
    assert!(!s.store.model("acme", "widget").await.unwrap().enabled);
    let audit = s.store.audit_log(None, 10).await.unwrap();
    assert_eq!(audit[0].action, "model.update");
    assert_eq!(
        audit[0].actor, "admin",
        "the session's token name, as the CLI's"
    );
    let page = exchange(
        s.addr,
        "GET",
        "/ui/models?done=disabled",
        Some(&cookie),
        None,
    )
    .await;
    assert!(page.body.contains("The model was disabled"));
    assert!(page.body.contains("Enable model"));

    // A token, its secret shown once on the answer and never in the list.
    let r = exchange(
        s.addr,
        "POST",
        "/ui/tokens",
        Some(&cookie),
        Some(&[
            ("csrf", csrf.as_str()),
            ("name", "line-3"),
            ("role", "read-only"),
            ("days", "30"),
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let at = r.body.find("id=\"secret\">").unwrap() + "id=\"secret\">".len();
    let secret = &r.body[at..at + r.body[at..].find('<').unwrap()];
    assert!(secret.starts_with("smt_"), "{secret}");
    let info = s
        .store
        .authenticate(secret)
        .await
        .unwrap()
        .expect("it works");
    assert_eq!(info.role, Role::ReadOnly);
    assert!(info.expires_at.is_some());
    let list = exchange(s.addr, "GET", "/ui/tokens", Some(&cookie), None).await;
    assert!(list.body.contains("line-3") && !list.body.contains(secret));
    let audit = exchange(s.addr, "GET", "/ui/audit", Some(&cookie), None).await;
    assert_eq!(audit.status, 200);
    assert!(
        audit.body.contains("token.create") || audit.body.contains("token"),
        "{}",
        audit.body
    );
    assert!(audit.body.contains("model.update"));

    // Read-only: no action forms, and posting one anyway is refused.
    let ro = sign_in(s.addr, &s.reader).await;
    let page = exchange(s.addr, "GET", "/ui/models", Some(&ro), None).await;
    assert!(
        !page.body.contains("data-confirm"),
        "no actions for read-only"
    );
    let ro_csrf = page.csrf_field().unwrap();
    for path in ["/ui/models/acme/widget/enable", "/ui/tokens"] {
        let r = exchange(
            s.addr,
            "POST",
            path,
            Some(&ro),
            Some(&[("csrf", ro_csrf.as_str()), ("name", "x")]),
        )
        .await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    assert!(!s.store.model("acme", "widget").await.unwrap().enabled);
}

#[sqlx::test]
async fn brand_limited_tokens_see_their_brands_only(pool: PgPool) {
    let s = start(pool, lenient()).await;
    widget(&s).await;
    let actor = Actor::bootstrap();
    s.store.ensure_brand("other", &actor).await.unwrap();
    let limited = s
        .store
        .create_token_for(
            "acme-line",
            Role::Admin,
            None,
            Some(&["other".to_string()]),
            &actor,
        )
        .await
        .unwrap()
        .secret;
    let cookie = sign_in(s.addr, &limited).await;
    let page = exchange(s.addr, "GET", "/ui/models", Some(&cookie), None).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("widget"), "another brand's model");
    for path in ["/ui/audit", "/ui/tokens"] {
        let r = exchange(s.addr, "GET", path, Some(&cookie), None).await;
        assert_eq!(r.status, 403, "{path}");
    }
    let csrf = page.csrf_field().unwrap();
    let r = exchange(
        s.addr,
        "POST",
        "/ui/models/acme/widget/disable",
        Some(&cookie),
        Some(&[("csrf", csrf.as_str())]),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(s.store.model("acme", "widget").await.unwrap().enabled);
    let r = exchange(
        s.addr,
        "GET",
        "/ui/signing-log?brand-id=acme",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
}
