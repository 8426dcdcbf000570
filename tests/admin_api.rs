//! The admin API over real HTTP on an ephemeral port, with a fresh Postgres database per test.
//! The HSM is replaced by a software backend here (it only has to hand back a key id and a
//! public key); the SoftHSM end-to-end run lives in the CLI tests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use serialmint::admin_api::{
    AdminApi, AdminLimits, Backend, BackendError, GeneratedKey, Refusal, ThrottleConfig,
    Unavailable,
};
use serialmint::catalog::Catalog;
use serialmint::cli::client::Client;
use serialmint::http::{self, Limits};
use serialmint::store::{
    Actor, AssertionKind, Issuance, NewAccountAssertion, RecordOutcome, Role, SigningKey, Store,
};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend that "generates" keys in software: deterministic ids from the name.
struct FakeBackend;

impl Backend for FakeBackend {
    fn generate_key<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<GeneratedKey, BackendError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if name == "doomed" {
                return Err(BackendError::Unavailable("token full".into()));
            }
            Ok(GeneratedKey {
                sha3_384: format!("id-of-{name}"),
                public_key: format!("pk-of-{name}"),
            })
        })
    }

    fn account_key_request<'a>(
        &'a self,
        key: &'a SigningKey,
    ) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(async move {
            Ok(format!(
                "type: account-key-request\npublic-key-sha3-384: {}\n",
                key.sha3_384.clone().unwrap_or_default()
            ))
        })
    }

    fn verify_account_assertions(
        &self,
        stream: &[u8],
        _known: &[String],
    ) -> Result<Vec<NewAccountAssertion>, Refusal> {
        let text = String::from_utf8_lossy(stream);
        if text.contains("forged") {
            return Err(Refusal(
                "account-key KEYX: signature does not verify".into(),
            ));
        }
        Ok(vec![NewAccountAssertion {
            kind: AssertionKind::Account,
            primary_key: "acme".into(),
            account_id: "acme".into(),
            revision: 0,
            text: text.into_owned(),
        }])
    }

    fn hsm_healthy(&self) -> bool {
        true
    }
}

struct Server {
    base: String,
    store: Store,
    admin: String,
    reader: String,
    catalog: Arc<Catalog>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(pool: PgPool, backend: Arc<dyn Backend>) -> Server {
    start_with(pool, backend, AdminLimits::default()).await
}

async fn start_with(pool: PgPool, backend: Arc<dyn Backend>, limits: AdminLimits) -> Server {
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
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api = AdminApi::new(
        store.clone(),
        catalog.clone(),
        backend,
        serialmint::server::metrics_handle(),
    )
    .with_limits(limits);
    tokio::spawn(http::serve(listener, api, Limits::default(), async move {
        let _ = stopped.await;
    }));
    Server {
        base,
        store,
        admin,
        reader,
        catalog,
        _stop: stop,
    }
}

/// A raw HTTP/1.1 exchange, for requests the client refuses to make (no token at all).
async fn raw(base: &str, request: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    (status, text)
}

/// A raw HTTP/1.1 exchange from the local address `from` (any 127.0.0.0/8 address is this
/// host): the status, the headers (lower-cased names) and the body.
async fn raw_from(
    base: &str,
    from: [u8; 4],
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let len = if method == "GET" {
        ""
    } else {
        "Content-Length: 2\r\n"
    };
    let body = if method == "GET" { "" } else { "{}" };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}{len}\r\n{body}"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Asserts an error answer: this status, `Content-Type: application/json` exactly, and the
/// body `{"message", "error_list": [{"code", "message"}]}` with this code.
#[track_caller]
fn assert_json_error(
    answer: &(u16, Vec<(String, String)>, String),
    status: u16,
    code: &str,
    what: &str,
) {
    let (st, headers, body) = answer;
    assert_eq!(*st, status, "{what}: {body}");
    assert_eq!(
        header(headers, "content-type"),
        Some("application/json"),
        "{what}"
    );
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {v}"
    );
    assert_eq!(v["error_list"][0]["code"], code, "{what}: {v}");
    assert!(v["error_list"][0]["message"].is_string(), "{what}: {v}");
}

/// The status in a client error's one line ("... (HTTP 404)").
fn status_of(err: &impl std::fmt::Display) -> u16 {
    let err = err.to_string();
    let i = err.rfind("(HTTP ").expect("an HTTP status in the error");
    err[i + 6..i + 9].parse().unwrap()
}

#[sqlx::test]
async fn tokens_gate_everything_but_health(pool: PgPool) {
    let s = start(pool, Arc::new(FakeBackend)).await;
    let (st, body) = raw(
        &s.base,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = raw(
        &s.base,
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("\"error_list\""), "{body}");
    let (st, _) = raw(
        &s.base,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(st, 401);

    let bogus = Client::new(&s.base, Some("smt_not-a-token".into())).unwrap();
    let e = bogus.get_json("/v1/models").await.unwrap_err();
    assert_eq!(status_of(&e), 401, "{e}");

    let reader = Client::new(&s.base, Some(s.reader.clone())).unwrap();
    assert!(reader.get_json("/v1/models").await.is_ok());
    assert!(reader.get_json("/v1/keys").await.is_ok());
    assert!(reader.get_json("/v1/signing-log").await.is_ok());
    // A read-only token changes nothing.
    for (method, path, body) in [
        (Method::POST, "/v1/models", json!({"name": "widget"})),
        (Method::POST, "/v1/keys", json!({"name": "k"})),
        (
            Method::POST,
            "/v1/models/widget/serial-policies",
            json!({"key": "k"}),
        ),
        (Method::DELETE, "/v1/models/widget", json!({})),
        (Method::POST, "/v1/account-keys", json!({})),
    ] {
        let e = reader.send_json(method, path, &body).await.unwrap_err();
        assert_eq!(status_of(&e), 403, "{path}: {e}");
    }
    assert!(s.store.models().await.unwrap().is_empty());
    assert!(s.store.keys().await.unwrap().is_empty());

    let admin = Client::new(&s.base, Some(s.admin.clone())).unwrap();
    let m = admin
        .send_json(Method::POST, "/v1/models", &json!({"name": "widget"}))
        .await
        .unwrap();
    assert_eq!(m["name"], "widget");
    assert_eq!(m["api-key"].as_str().unwrap().len(), 43);
    let (_, metrics) = admin
        .call(Method::GET, "/metrics", "", Bytes::new())
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&metrics).contains("admin_requests_total"),
        "metrics exposition names the admin request counter"
    );
}

#[sqlx::test]
async fn an_audit_key_never_signs_an_assertion(pool: PgPool) {
    let s = start(pool, Arc::new(FakeBackend)).await;
    let admin = Client::new(&s.base, Some(s.admin.clone())).unwrap();
    let k = admin
        .send_json(
            Method::POST,
            "/v1/keys",
            &json!({"name": "audit", "purpose": "audit"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (k["purpose"].as_str(), k["allowed-types"].clone()),
        (Some("audit"), json!([]))
    );
    for _ in 0..50 {
        if admin.get_json("/v1/keys/audit").await.unwrap()["status"] == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin
        .send_json(
            Method::POST,
            "/v1/models",
            &json!({"name": "widget", "api-key": "0123456789abcdef0123"}),
        )
        .await
        .unwrap();
    // Neither a serial policy nor an account-key-request.
    let e = admin
        .send_json(
            Method::POST,
            "/v1/models/widget/serial-policies",
            &json!({"key": "audit"}),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 409, "{e}");
    assert!(e.to_string().contains("audit key"), "{e}");
    let e = admin
        .send_json(Method::POST, "/v1/keys/audit/register", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 409, "{e}");
    // An audit key takes no assertion types.
    let e = admin
        .send_json(
            Method::POST,
            "/v1/keys",
            &json!({"name": "audit2", "purpose": "audit", "allowed-types": ["serial"]}),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 400, "{e}");
    // Checkpoints are listed (none yet: no server checkpointer runs here).
    assert_eq!(
        admin.get_json("/v1/checkpoints").await.unwrap(),
        json!({"items": []})
    );
}

#[sqlx::test]
async fn keys_are_created_asynchronously_and_rotate_through_policies(pool: PgPool) {
    let s = start(pool, Arc::new(FakeBackend)).await;
    let admin = Client::new(&s.base, Some(s.admin.clone())).unwrap();
    let (status, body) = admin
        .call(
            Method::POST,
            "/v1/keys",
            "application/json",
            Bytes::from(json!({"name": "key-one"}).to_string()),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::ACCEPTED);
    let k: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(k["status"], "pending");
    let mut k = k;
    for _ in 0..50 {
        if k["status"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        k = admin.get_json("/v1/keys/key-one").await.unwrap();
    }
    assert_eq!(k["status"], "ready");
    assert_eq!(k["sha3-384"], "id-of-key-one");
    // by id too
    assert_eq!(
        admin.get_json("/v1/keys/id-of-key-one").await.unwrap()["name"],
        "key-one"
    );

    // a failed generation reports its reason
    admin
        .send_json(Method::POST, "/v1/keys", &json!({"name": "doomed"}))
        .await
        .unwrap();
    let mut d = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        d = admin.get_json("/v1/keys/doomed").await.unwrap();
        if d["status"] != "pending" {
            break;
        }
    }
    assert_eq!(d["status"], "failed");
    assert_eq!(d["error"], "token full");

    // register-key hands back the assertion text
    let (_, text) = admin
        .call(Method::POST, "/v1/keys/key-one/register", "", Bytes::new())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&text).contains("public-key-sha3-384: id-of-key-one"));

    admin
        .send_json(
            Method::POST,
            "/v1/models",
            &json!({"name": "widget", "api-key": "0123456789abcdef0123"}),
        )
        .await
        .unwrap();
    let p = admin
        .send_json(
            Method::POST,
            "/v1/models/widget/serial-policies",
            &json!({"key": "id-of-key-one"}),
        )
        .await
        .unwrap();
    assert_eq!(p["revision"], 1);
    admin
        .send_json(Method::POST, "/v1/keys", &json!({"name": "key-two"}))
        .await
        .unwrap();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if admin.get_json("/v1/keys/key-two").await.unwrap()["status"] == "ready" {
            break;
        }
    }
    let p = admin
        .send_json(
            Method::POST,
            "/v1/models/widget/serial-policies",
            &json!({"key": "key-two"}),
        )
        .await
        .unwrap();
    assert_eq!(p["revision"], 2);
    let models = admin.get_json("/v1/models").await.unwrap();
    assert_eq!(models["items"][0]["active-policy"]["key"], "id-of-key-two");
    let history = admin
        .get_json("/v1/models/widget/serial-policies")
        .await
        .unwrap();
    let revs: Vec<(i64, bool)> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["revision"].as_i64().unwrap(),
                p["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(revs, [(2, true), (1, false)]);

    // a typo is a 404, not an empty history
    let e = admin
        .get_json("/v1/models/nope/serial-policies")
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 404);

    // disabling a key keeps it listed but out of new policies
    admin
        .send_json(Method::POST, "/v1/keys/key-one/disable", &json!({}))
        .await
        .unwrap();
    let e = admin
        .send_json(
            Method::POST,
            "/v1/models/widget/serial-policies",
            &json!({"key": "key-one"}),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 400, "{e}");
}

#[sqlx::test]
async fn models_change_and_delete_only_before_issuing(pool: PgPool) {
    let s = start(pool, Arc::new(FakeBackend)).await;
    let admin = Client::new(&s.base, Some(s.admin.clone())).unwrap();
    let m = admin
        .send_json(
            Method::POST,
            "/v1/models",
            &json!({"name": "widget", "api-key": "0123456789abcdef0123"}),
        )
        .await
        .unwrap();
    let e = admin
        .send_json(Method::POST, "/v1/models", &json!({"name": "widget"}))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 409, "{e}");
    let e = admin
        .send_json(
            Method::POST,
            "/v1/models",
            &json!({"name": "w", "api-key": "short"}),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 400, "{e}");
    let changed = admin
        .send_json(Method::POST, "/v1/models/widget/api-key", &json!({}))
        .await
        .unwrap();
    assert_ne!(changed["api-key"], m["api-key"]);
    let off = admin
        .send_json(Method::POST, "/v1/models/widget/disable", &json!({}))
        .await
        .unwrap();
    assert_eq!(off["enabled"], false);
    let patched = admin
        .send_json(
            Method::PATCH,
            "/v1/models/widget",
            &json!({"enabled": true, "rate-limit": 50, "serial-generation": "prefix-counter", "serial-prefix": "W-"}),
        )
        .await
        .unwrap();
    assert_eq!(patched["enabled"], true);
    assert_eq!(patched["rate-limit"]["per-second"], 50);
    assert_eq!(patched["serial-generation"], "prefix-counter");

    let model = s.store.model("acme", "widget").await.unwrap();
    let out = s
        .store
        .record_issuances(&[Issuance {
            brand_id: "acme".into(),
            model_id: model.id,
            model_name: "widget".into(),
            serial: "W-1".into(),
            revision: 0,
            device_key_id: "dev".into(),
            request_id: "req".into(),
            signing_key_id: "key".into(),
            instance: "t".into(),
            serial_assertion: "type: serial\n".into(),
            original_serial: None,
            original_serial_id: None,
        }])
        .await
        .unwrap();
    assert!(matches!(out[0], RecordOutcome::Inserted(_)));
    let e = admin
        .send_json(Method::DELETE, "/v1/models/widget", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 409, "{e}");
    admin
        .send_json(Method::POST, "/v1/models", &json!({"name": "spare"}))
        .await
        .unwrap();
    admin
        .send_json(Method::DELETE, "/v1/models/spare", &json!({}))
        .await
        .unwrap();
    let e = admin.get_json("/v1/models/spare").await.unwrap_err();
    assert_eq!(status_of(&e), 404);
}

#[sqlx::test]
async fn the_signing_log_pages_and_exports_without_a_cap(pool: PgPool) {
    let s = start(pool, Arc::new(FakeBackend)).await;
    let admin = Client::new(&s.base, Some(s.admin.clone())).unwrap();
    admin
        .send_json(Method::POST, "/v1/models", &json!({"name": "widget"}))
        .await
        .unwrap();
    let model = s.store.model("acme", "widget").await.unwrap();
    let rows: Vec<Issuance> = (0..1500)
        .map(|i| Issuance {
            brand_id: "acme".into(),
            model_id: model.id,
            model_name: "widget".into(),
            serial: format!("SN{i:05}"),
            revision: 0,
            device_key_id: format!("dev{i}"),
            request_id: format!("req{i}"),
            signing_key_id: "key".into(),
            instance: "t".into(),
            serial_assertion: format!("type: serial\nserial: SN{i:05}\nbody, with \"quotes\"\n"),
            original_serial: None,
            original_serial_id: None,
        })
        .collect();
    s.store.record_issuances(&rows).await.unwrap();

    let page = admin
        .get_json("/v1/signing-log?model=widget&serial=SN000&limit=5")
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0]["serial"], "SN00099");
    let next = page["next-before"].as_i64().unwrap();
    let page2 = admin
        .get_json(&format!(
            "/v1/signing-log?model=widget&serial=SN000&limit=500&before={next}"
        ))
        .await
        .unwrap();
    assert_eq!(page2["items"].as_array().unwrap().len(), 95);
    assert!(page2["next-before"].is_null());

    let mut csv = Vec::new();
    admin
        .download("/v1/signing-log/export?format=csv", &mut csv)
        .await
        .unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.starts_with("id,brand-id,model,serial,"));
    assert_eq!(csv.matches("\r\n").count(), 1500, "one record per serial");
    assert!(csv.contains("\"type: serial\nserial: SN01499\nbody, with \"\"quotes\"\"\n\""));

    let mut js = Vec::new();
    admin
        .download("/v1/signing-log/export?format=json&serial=SN01", &mut js)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&js).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 500);
    assert_eq!(arr[0]["serial"], "SN01000");
    assert!(
        arr[0]["serial-assertion"]
            .as_str()
            .unwrap()
            .contains("SN01000")
    );

    let e = admin
        .download("/v1/signing-log/export?format=xml", &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 400);
}

#[sqlx::test]
async fn unknown_fields_are_refused_by_name(pool: PgPool) {
    let s = start(pool, Arc::new(FakeBackend)).await;
    let admin = Client::new(&s.base, Some(s.admin.clone())).unwrap();
    for (method, path, body, field) in [
        (
            Method::POST,
            "/v1/models",
            json!({"name": "widget", "rate_limit": 5}),
            "rate_limit",
        ),
        (
            Method::POST,
            "/v1/keys",
            json!({"name": "k", "types": ["serial"]}),
            "types",
        ),
        (
            Method::POST,
            "/v1/tokens",
            json!({"name": "t", "admin": true}),
            "admin",
        ),
    ] {
        let e = admin
            .send_json(method, path, &body)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(status_of(&e), 400, "{path}: {e}");
        assert!(
            e.contains(&format!("unknown field `{field}`")),
            "{path}: {e}"
        );
    }
    let e = admin
        .send_json(
            Method::PATCH,
            "/v1/models/widget",
            &json!({"enabled": true, "colour": "red"}),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown field `colour`") && e.contains("(HTTP 400)"),
        "{e}"
    );
    // Nothing was made by the refused requests.
    assert!(s.store.models().await.unwrap().is_empty());
    assert!(s.store.keys().await.unwrap().is_empty());
}

#[sqlx::test]
async fn a_patch_clears_a_rate_limit_with_null_and_keeps_it_when_absent(pool: PgPool) {
    let s = start(pool, Arc::new(FakeBackend)).await;
    let admin = Client::new(&s.base, Some(s.admin.clone())).unwrap();
    admin
        .send_json(
            Method::POST,
            "/v1/models",
            &json!({"name": "widget", "rate-limit": 5, "rate-limit-burst": 9}),
        )
        .await
        .unwrap();
    let m = admin
        .send_json(
            Method::PATCH,
            "/v1/models/widget",
            &json!({"rate-limit-burst": null}),
        )
        .await
        .unwrap();
    assert_eq!(m["rate-limit"]["per-second"], 5);
    assert!(m["rate-limit"]["burst"].is_null(), "{m}");
    let e = admin
        .send_json(
            Method::PATCH,
            "/v1/models/widget",
            &json!({"rate-limit": 0}),
        )
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(status_of(&e), 400, "{e}");
}

#[sqlx::test]
async fn account_key_pushes_are_verified_and_readiness_reports_each_part(pool: PgPool) {
    let s = start(pool.clone(), Arc::new(FakeBackend)).await;
    let admin = Client::new(&s.base, Some(s.admin.clone())).unwrap();
    let e = admin
        .call(
            Method::POST,
            "/v1/account-keys",
            "application/x.ubuntu.assertion",
            Bytes::from_static(b"type: account-key\nforged\n"),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("KEYX") && e.contains("(HTTP 400)"), "{e}");
    assert!(s.store.account_assertions().await.unwrap().is_empty());
    admin
        .call(
            Method::POST,
            "/v1/account-keys",
            "application/x.ubuntu.assertion",
            Bytes::from_static(b"type: account\naccount-id: acme\n"),
        )
        .await
        .unwrap();
    assert_eq!(s.store.account_assertions().await.unwrap().len(), 1);

    let (st, body) = raw(
        &s.base,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(st, 200, "{body}");
    drop(s);

    // Without an HSM, /readyz says which part is missing.
    let s = start_again(pool).await;
    let (st, body) = raw(
        &s.base,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(st, 503, "{body}");
    assert!(
        body.contains("\"hsm\":false") && body.contains("\"database\":true"),
        "{body}"
    );
}

async fn start_again(pool: PgPool) -> Server {
    // A second server on the same database (the brand already exists).
    start(pool, Arc::new(Unavailable("no HSM".into()))).await
}

#[sqlx::test]
async fn the_catalog_follows_admin_changes(pool: PgPool) {
    let s = start(pool, Arc::new(FakeBackend)).await;
    let _refresher = s
        .catalog
        .spawn_refresher(Duration::from_secs(30), std::future::pending());
    let admin = Client::new(&s.base, Some(s.admin.clone())).unwrap();
    // Wait for the refresher's own first load (after its LISTEN), so that only a
    // notification can make the change below visible (the periodic reload is 30 s away).
    let loaded = s.catalog.snapshot().generation();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.catalog.snapshot().generation() == loaded {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refresher never loaded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = s.catalog.snapshot().generation();
    let m = admin
        .send_json(
            Method::POST,
            "/v1/models",
            &json!({"name": "widget", "api-key": "0123456789abcdef0123"}),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let snap = s.catalog.snapshot();
        if let Some(found) = snap.model("acme", "widget") {
            assert_eq!(found.api_key, m["api-key"].as_str().unwrap());
            assert!(snap.generation() > before);
            assert_eq!(
                snap.model_by_api_key("0123456789abcdef0123", "acme", "widget")
                    .map(|m| m.name.as_str()),
                Some("widget")
            );
            assert!(snap.serial_signing_key(found).is_err(), "no policy yet");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the catalog did not see the new model within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test]
async fn postgres_down_is_503_not_401(pool: PgPool) {
    let s = start(pool, Arc::new(FakeBackend)).await;
    let admin = Client::new(&s.base, Some(s.admin.clone())).unwrap();
    assert!(admin.get_json("/v1/models").await.is_ok());
    s.store.close().await;
    let e = admin.get_json("/v1/models").await.unwrap_err();
    assert_eq!(status_of(&e), 503, "{e}");
    let (st, body) = raw(
        &s.base,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("\"database\":false"), "{body}");
}

fn strip(v: &mut Value, field: &str) {
    match v {
        Value::Object(m) => {
            m.remove(field);
            m.values_mut().for_each(|x| strip(x, field));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip(x, field)),
        _ => {}
    }
}

/// Every admin route of the README's table, with a method it answers.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/metrics"),
    ("GET", "/v1/brands"),
    ("POST", "/v1/brands"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys/k1"),
    ("POST", "/v1/keys/k1/disable"),
    ("POST", "/v1/keys/k1/enable"),
    ("POST", "/v1/keys/k1/register"),
    ("POST", "/v1/keys/import"),
    ("GET", "/v1/account-keys"),
    ("POST", "/v1/account-keys"),
    ("GET", "/v1/models"),
    ("POST", "/v1/models"),
    ("GET", "/v1/models/widget"),
    ("PATCH", "/v1/models/widget"),
    ("DELETE", "/v1/models/widget"),
    ("POST", "/v1/models/widget/api-key"),
    ("POST", "/v1/models/widget/disable"),
    ("POST", "/v1/models/widget/enable"),
    ("GET", "/v1/models/widget/serial-policies"),
    ("POST", "/v1/models/widget/serial-policies"),
    ("GET", "/v1/serial-policies"),
    ("GET", "/v1/signing-log"),
    ("GET", "/v1/signing-log/export?format=csv"),
    ("GET", "/v1/tokens"),
    ("POST", "/v1/tokens"),
    ("POST", "/v1/tokens/1/revoke"),
    ("GET", "/v1/audit-log"),
    ("GET", "/v1/audit-log/export"),
    ("GET", "/v1/checkpoints"),
    ("GET", "/v1/no-such-route"),
];

#[sqlx::test]
async fn every_route_but_health_needs_a_token_and_read_only_changes_nothing(pool: PgPool) {
    let s = start(pool, Arc::new(FakeBackend)).await;
    let admin = Client::new(&s.base, Some(s.admin.clone())).unwrap();
    admin
        .send_json(Method::POST, "/v1/models", &json!({"name": "widget"}))
        .await
        .unwrap();
    admin
        .send_json(Method::POST, "/v1/keys", &json!({"name": "k1"}))
        .await
        .unwrap();
    // The key is generated in the background: let it settle before comparing states.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while admin.get_json("/v1/keys/k1").await.unwrap()["status"] != "ready" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "k1 never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let local = [127, 0, 0, 1];
    for path in ["/healthz", "/readyz"] {
        let (st, _, body) = raw_from(&s.base, local, "GET", path, None).await;
        assert_eq!(st, 200, "{path}: {body}");
    }
    // No token: 401 everywhere else, unknown paths included (nothing is revealed).
    for (method, path) in ROUTES {
        let a = raw_from(&s.base, local, method, path, None).await;
        assert_json_error(&a, 401, "unauthorized", &format!("{method} {path}"));
    }

    // A read-only token: every change is 403 and the state stays the same.
    let snapshot = || async {
        let mut all = Vec::new();
        for path in [
            "/v1/brands",
            "/v1/models",
            "/v1/keys",
            "/v1/tokens",
            "/v1/serial-policies",
            "/v1/account-keys",
            "/v1/audit-log",
        ] {
            let mut v = admin.get_json(path).await.unwrap();
            // Using a token is not a change.
            strip(&mut v, "last-used-at");
            all.push(v);
        }
        all
    };
    let before = snapshot().await;
    for (method, path) in ROUTES.iter().filter(|(m, _)| *m != "GET") {
        let a = raw_from(&s.base, local, method, path, Some(&s.reader)).await;
        assert_json_error(&a, 403, "forbidden", &format!("read-only {method} {path}"));
    }
    assert_eq!(
        snapshot().await,
        before,
        "a read-only token changed something"
    );
    for (method, path) in ROUTES.iter().filter(|(m, _)| *m == "GET") {
        let (st, _, body) = raw_from(&s.base, local, method, path, Some(&s.reader)).await;
        let expected = if path.contains("no-such") { 404 } else { 200 };
        assert_eq!(st, expected, "read-only {method} {path}: {body}");
    }
}

#[sqlx::test]
async fn repeated_bad_tokens_get_429_per_address_even_with_a_good_token(pool: PgPool) {
    let limits = AdminLimits {
        throttle: ThrottleConfig {
            failures_allowed: 3,
            first_delay: Duration::from_secs(120),
            table_max: 16,
        },
        ..AdminLimits::default()
    };
    let s = start_with(pool, Arc::new(FakeBackend), limits).await;
    let attacker = [127, 0, 0, 2];
    let admin_host = [127, 0, 0, 3];
    let good = s.admin.as_str();

    // Missing tokens guess nothing and are not counted.
    for _ in 0..5 {
        let a = raw_from(&s.base, attacker, "GET", "/v1/models", None).await;
        assert_json_error(&a, 401, "unauthorized", "no token");
    }
    let (st, _, body) = raw_from(&s.base, attacker, "GET", "/v1/models", Some(good)).await;
    assert_eq!(st, 200, "{body}");

    // The allowance: three bad tokens are plain 401s...
    for i in 0..3 {
        let a = raw_from(
            &s.base,
            attacker,
            "GET",
            "/v1/models",
            Some(&format!("smt_guess{i}")),
        )
        .await;
        assert_json_error(&a, 401, "unauthorized", "bad token");
    }
    // ...then the address is shut out, whatever token it sends.
    for token in [Some("smt_guess-again"), Some(good), None] {
        let a = raw_from(&s.base, attacker, "POST", "/v1/models", token).await;
        assert_json_error(&a, 429, "too-many-bad-tokens", "shut out");
        let retry: u64 = header(&a.1, "retry-after")
            .expect("429 carries Retry-After")
            .parse()
            .unwrap();
        assert!((1..=120).contains(&retry), "Retry-After {retry}");
    }
    // Health stays open to it.
    let (st, _, _) = raw_from(&s.base, attacker, "GET", "/healthz", None).await;
    assert_eq!(st, 200);

    // Another address with the good token works, and its success does not clear the
    // attacker's count.
    let (st, _, body) = raw_from(&s.base, admin_host, "GET", "/v1/models", Some(good)).await;
    assert_eq!(st, 200, "{body}");
    let a = raw_from(&s.base, attacker, "GET", "/v1/models", Some(good)).await;
    assert_json_error(&a, 429, "too-many-bad-tokens", "still shut out");
    // Nothing was created by the shut-out POSTs.
    assert!(s.store.models().await.unwrap().is_empty());
}
