//! Remodel policies end to end: the real `serialmint` binary serves a fresh Postgres database
//! and SoftHSM token, and `create remodel-policy`, `list remodel-policies` and `delete
//! remodel-policy` drive it; the admin API answers the same routes with the right statuses
//! and codes, every change leaves its audit-log row, and each one is announced on
//! `serialmint_changes` (what every instance's catalog follows).

mod common;
#[path = "common/serve.rs"]
mod serve;
#[path = "common/softhsm.rs"]
mod softhsm;

use serde_json::{Value, json};
use serialmint::store::{Actor, Change, NewRemodelPolicy, Store};
use serve::Serve;
use softhsm::SoftHsm;
use sqlx::PgPool;

const PIN: &str = "4321-remodel-test";
const LABEL: &str = "remodel-test";

/// `serialmint ARGS` that must fail: its one-line error.
#[track_caller]
fn fails(s: &Serve, token: Option<&str>, args: &[&str]) -> String {
    let out = s.run(token, args);
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err
}

/// A raw admin API call: status, Content-Type and JSON body.
async fn api(
    s: &Serve,
    token: &str,
    method: &str,
    path: &str,
    body: &Value,
) -> (u16, String, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", s.admin_url))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        ct,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[sqlx::test]
async fn remodel_policies_through_the_cli_and_the_admin_api(pool: PgPool) {
    let hsm = SoftHsm::new();
    hsm.init_token(LABEL, PIN);
    let s = Serve::start(serve::env(&pool, &hsm, LABEL, PIN, None, "warn"));
    let init = s.json(None, &["init", "--brand-id", "acme", "--json"]);
    let token = init["admin-token"].as_str().unwrap().to_string();
    let t = Some(token.as_str());
    for (name, key) in [
        ("gen1", "gen1-api-key-0123456789"),
        ("gen2", "gen2-api-key-0123456789"),
    ] {
        s.ok(t, &["create", "model", name, "--api-key", key]);
    }

    // create: the JSON names exactly the move and its serial pattern.
    let created = s.json(
        t,
        &[
            "create",
            "remodel-policy",
            "--from-model",
            "gen1",
            "--to-model",
            "gen2",
            "--serial",
            "A-[0-9]+",
            "--json",
        ],
    );
    assert_eq!(
        created,
        json!({"from-brand": "acme", "from-model": "gen1", "to-model": "gen2", "serial": "A-[0-9]+"})
    );
    // Another brand's model, any serial (a trusted brand's devices moving to ours).
    let text = s.ok(
        t,
        &[
            "create",
            "remodel-policy",
            "--from-brand",
            "otherbrand",
            "--from-model",
            "old",
            "--to-model",
            "gen2",
        ],
    );
    assert!(text.contains("otherbrand/old -> acme/gen2"), "{text}");
    assert!(text.contains("any serial"), "{text}");

    // list: JSON and table.
    let listed = s.json(t, &["list", "remodel-policies", "--json"]);
    assert_eq!(
        listed,
        json!([
            {"from-brand": "acme", "from-model": "gen1", "to-model": "gen2", "serial": "A-[0-9]+"},
            {"from-brand": "otherbrand", "from-model": "old", "to-model": "gen2", "serial": null},
        ])
    );
    let table = s.ok(t, &["list", "remodel-policies"]);
    assert!(
        table.contains("acme/gen1") && table.contains("A-[0-9]+"),
        "{table}"
    );
    let only = s.json(
        t,
        &["list", "remodel-policies", "--to-model", "gen1", "--json"],
    );
    assert_eq!(only, json!([]));

    // Refusals, one line each.
    let dup = fails(
        &s,
        t,
        &[
            "create",
            "remodel-policy",
            "--from-model",
            "gen1",
            "--to-model",
            "gen2",
        ],
    );
    assert!(
        dup.contains("HTTP 409") && dup.contains("already exists"),
        "{dup}"
    );
    let unknown = fails(
        &s,
        t,
        &[
            "create",
            "remodel-policy",
            "--from-model",
            "gen1",
            "--to-model",
            "gen9",
        ],
    );
    assert!(unknown.contains("HTTP 404"), "{unknown}");
    let unknown_from = fails(
        &s,
        t,
        &[
            "create",
            "remodel-policy",
            "--from-model",
            "gen7",
            "--to-model",
            "gen2",
        ],
    );
    assert!(
        unknown_from.contains("HTTP 404") && unknown_from.contains("gen7"),
        "{unknown_from}"
    );
    let same = fails(
        &s,
        t,
        &[
            "create",
            "remodel-policy",
            "--from-model",
            "gen2",
            "--to-model",
            "gen2",
        ],
    );
    assert!(
        same.contains("HTTP 400") && same.contains("to itself"),
        "{same}"
    );
    let regex = fails(
        &s,
        t,
        &[
            "create",
            "remodel-policy",
            "--from-model",
            "gen1",
            "--to-model",
            "gen1",
            "--from-brand",
            "x-brand",
            "--serial",
            "(unclosed",
        ],
    );
    assert!(
        regex.contains("HTTP 400") && regex.contains("invalid serial pattern"),
        "{regex}"
    );

    // The admin API: statuses, codes, Content-Type exactly.
    let (status, ct, body) = api(
        &s,
        &token,
        "POST",
        "/v1/remodel-policies",
        &json!({"from-model": "gen1"}),
    )
    .await;
    assert_eq!((status, ct.as_str()), (400, "application/json"), "{body}");
    assert_eq!(body["error_list"][0]["code"], "invalid", "{body}");
    let (status, _, body) = api(
        &s,
        &token,
        "POST",
        "/v1/remodel-policies",
        &json!({"from-model": "gen1", "to-model": "gen2", "color": "red"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("color"),
        "{body}"
    );
    let (status, ct, body) = api(
        &s,
        &token,
        "POST",
        "/v1/remodel-policies",
        &json!({"from-model": "gen1", "to-model": "gen2"}),
    )
    .await;
    assert_eq!((status, ct.as_str()), (409, "application/json"), "{body}");
    assert_eq!(body["error_list"][0]["code"], "conflict");
    let (status, _, body) = api(
        &s,
        &token,
        "DELETE",
        "/v1/remodel-policies?from-model=gen1",
        &Value::Null,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = api(&s, &token, "PUT", "/v1/remodel-policies", &Value::Null).await;
    assert_eq!(status, 405);
    let (status, _, body) = api(&s, &token, "GET", "/v1/remodel-policies", &Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(body["items"][0]["brand-id"], "acme");
    assert_eq!(body["items"][0]["created-by"], "admin");
    // A read-only token may list, not change.
    let ro = s.json(
        t,
        &["create", "token", "viewer", "--role", "read-only", "--json"],
    );
    let ro = ro["token"].as_str().unwrap();
    assert!(
        s.run(Some(ro), &["list", "remodel-policies"])
            .status
            .success()
    );
    let err = fails(
        &s,
        Some(ro),
        &[
            "delete",
            "remodel-policy",
            "--from-model",
            "gen1",
            "--to-model",
            "gen2",
        ],
    );
    assert!(err.contains("HTTP 403"), "{err}");

    // delete: once.
    let deleted = s.json(
        t,
        &[
            "delete",
            "remodel-policy",
            "--from-model",
            "gen1",
            "--to-model",
            "gen2",
            "--json",
        ],
    );
    assert_eq!(deleted["from-model"], "gen1");
    assert_eq!(deleted["serial"], "A-[0-9]+");
    let again = fails(
        &s,
        t,
        &[
            "delete",
            "remodel-policy",
            "--from-model",
            "gen1",
            "--to-model",
            "gen2",
        ],
    );
    assert!(
        again.contains("HTTP 404") && again.contains("no remodel policy"),
        "{again}"
    );
    let text = s.ok(
        t,
        &[
            "delete",
            "remodel-policy",
            "--from-brand",
            "otherbrand",
            "--from-model",
            "old",
            "--to-model",
            "gen2",
        ],
    );
    assert!(
        text.contains("Deleted remodel policy otherbrand/old -> acme/gen2"),
        "{text}"
    );
    assert_eq!(
        s.json(t, &["list", "remodel-policies", "--json"]),
        json!([])
    );

    // Every change has its audit-log row.
    let audit = s.json(t, &["list", "audit-log", "--json"]);
    let actions: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("remodel-policy."))
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["target"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            (
                "remodel-policy.delete".to_string(),
                "otherbrand/old -> acme/gen2".to_string()
            ),
            (
                "remodel-policy.delete".into(),
                "acme/gen1 -> acme/gen2".into()
            ),
            (
                "remodel-policy.create".into(),
                "otherbrand/old -> acme/gen2".into()
            ),
            (
                "remodel-policy.create".into(),
                "acme/gen1 -> acme/gen2".into()
            ),
        ]
    );
}

#[sqlx::test]
async fn remodel_policy_changes_are_announced(pool: PgPool) {
    let store = Store::from_pool(pool);
    store.migrate().await.unwrap();
    let actor = Actor("tester".into());
    store.ensure_brand("acme", &actor).await.unwrap();
    let new_model = |name: &str| serialmint::store::NewModel {
        brand_id: "acme".into(),
        name: name.into(),
        api_key: format!("{name}-api-key-0123456789"),
        rate_limit_per_sec: None,
        rate_limit_burst: None,
        duplicate_policy: serialmint::store::DuplicatePolicy::Refuse,
        serial_generation: serialmint::store::SerialGeneration::Uuid,
        serial_prefix: String::new(),
    };
    for m in ["gen1", "gen2"] {
        store.create_model(&new_model(m), &actor).await.unwrap();
    }
    let mut changes = store.listen_changes().await.unwrap();
    let policy = NewRemodelPolicy {
        from_brand_id: "acme".into(),
        from_model: "gen1".into(),
        to_model: "gen2".into(),
        serial_pattern: None,
    };
    store
        .create_remodel_policy("acme", &policy, &actor)
        .await
        .unwrap();
    assert_eq!(
        changes.next().await.unwrap(),
        Change::Changed("remodel-policy.create acme/gen1 -> acme/gen2".into())
    );
    store
        .delete_remodel_policy("acme", "acme", "gen1", "gen2", &actor)
        .await
        .unwrap();
    assert_eq!(
        changes.next().await.unwrap(),
        Change::Changed("remodel-policy.delete acme/gen1 -> acme/gen2".into())
    );
    // Deleting the model devices move to takes its policies with it.
    store
        .create_remodel_policy("acme", &policy, &actor)
        .await
        .unwrap();
    store.delete_model("acme", "gen2", &actor).await.unwrap();
    assert!(store.remodel_policies(None, None).await.unwrap().is_empty());
}
