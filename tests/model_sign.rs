//! `sign model` / `POST /v1/model-assertions` end to end: statements in JSON and YAML signed
//! on a real SoftHSM token (the brand key is snapd's TestRootPrivKey for `testrootorg`; a
//! second key has a role-scoped account-key) with a real Postgres, each signed model fed to
//! snapd 2.57's own Go code (`tests/snapd/accept_model.go`: `asserts.Decode`, then a database
//! trusting the testrootorg root with the key's account-key added), and the refusals (a
//! statement snapd would not decode, a key whose constraints do not admit the model), over
//! HTTP and through the real CLI.
//!
//! Run with `cargo nextest run --test model_sign`.

#[path = "common/admin.rs"]
mod admin;
mod common;
#[path = "common/device.rs"]
mod device;
#[path = "common/oracle.rs"]
mod oracle;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::ffi::OsStr;

use serde_json::json;
use serialmint::assertion::{Model, decode};
use sqlx::PgPool;

use admin::{Admin, account_key, add_key, push_account_key};
use device::*;

/// A UC20 model statement as `snap sign` takes it (no timestamp: the vault fills it).
const UC20: &str = r#"{
  "type": "model",
  "series": "16",
  "model": "widget-20",
  "architecture": "amd64",
  "base": "core20",
  "grade": "signed",
  "display-name": "Widget 20",
  "snaps": [
    {"name": "pc", "type": "gadget", "default-channel": "20/stable",
     "id": "UqFziVZDHLSyO3TqSWgNBoAdHbLI4dAH"},
    {"name": "pc-kernel", "type": "kernel", "default-channel": "20/stable",
     "id": "pYVQrBcKmBa0mZ4CCN7ExT6jH8rY1hza"},
    {"name": "core20", "type": "base", "default-channel": "latest/stable",
     "id": "DLqre5XGLbDqg9jPtiAhRRjDuPVa5X1q"},
    {"name": "hello", "modes": ["run"], "presence": "optional",
     "id": "buPKUD3TKqCOgLEjjHx5kSiCpIs5cMuQ"}
  ],
  "system-user-authority": "*"
}"#;

/// The same kind of model in YAML, pre-UC20, with a body.
const CLASSIC_YAML: &str = "\
type: model
series: '16'
model: widget-yaml
architecture: arm64
gadget: pi
kernel: pi-kernel
required-snaps: [hello, network-manager]
timestamp: '2026-01-02T03:04:05Z'
body: |
  Widget, YAML edition.
";

fn oracle_model(name: &str, model: &[u8], chain: Option<&[u8]>) -> oracle::Verdict {
    let dir = tempfile::tempdir().unwrap();
    let m = oracle::file(dir.path(), &format!("{name}.model"), model);
    let mut args = vec![m.into_os_string()];
    if let Some(c) = chain {
        args.push(oracle::file(dir.path(), &format!("{name}.chain"), c).into_os_string());
    }
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    oracle::run(dir.path(), "accept_model.go", &args, false)
}

#[sqlx::test]
async fn models_signed_on_the_hsm_are_accepted_by_snapd(pool: PgPool) {
    let (token, server) = setup(pool).await;
    let admin = Admin::start(&server, &token).await;

    // JSON, the brand key named by name: 201, snapd's decoder and database accept it.
    let a = admin
        .post(
            "/v1/model-assertions",
            &json!({"statement": UC20, "key": KEY_NAME}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/json"));
    let j = a.json();
    assert_eq!(j["brand-id"], BRAND);
    assert_eq!(j["model"], "widget-20");
    assert_eq!(j["key"], token.key_id.as_str());
    let text = j["assertion"].as_str().unwrap();
    let model = Model::try_from(decode(text.as_bytes()).unwrap()).unwrap();
    model
        .verify_with(&common::TestKey::root().public)
        .expect("signed by the brand key");
    assert_eq!(model.grade(), Some("signed"));
    assert!(text.starts_with("type: model\nauthority-id: testrootorg\nseries: 16\n"));
    let v = oracle_model("uc20", text.as_bytes(), None);
    assert!(v.accepted, "snapd refused the model: {}", v.out);
    assert_eq!(
        v.out,
        "snapd accepted model testrootorg/widget-20 (grade signed)\n"
    );
    println!("{}", v.out.trim_end());

    // YAML through the real CLI, no key named (the brand's only key that may sign it).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("widget.yaml");
    std::fs::write(&file, CLASSIC_YAML).unwrap();
    let out = admin.cli(&["sign", "model", file.to_str().unwrap()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model = Model::try_from(decode(&out.stdout).unwrap()).unwrap();
    assert_eq!(model.timestamp(), common::ts("2026-01-02T03:04:05Z"));
    assert_eq!(model.body(), b"Widget, YAML edition.\n");
    let v = oracle_model("yaml", &out.stdout, None);
    assert!(v.accepted, "snapd refused the model: {}", v.out);
    assert_eq!(
        v.out,
        "snapd accepted model testrootorg/widget-yaml (grade unset)\n"
    );

    // The oracle can fail: one header changed under the signature.
    let forged = String::from_utf8(out.stdout.clone())
        .unwrap()
        .replace("architecture: arm64", "architecture: amd64");
    let v = oracle_model("forged", forged.as_bytes(), None);
    assert!(!v.accepted, "{}", v.out);
    assert!(v.out.contains("failed signature verification"), "{}", v.out);

    // Both signings are in the audit log.
    let log = admin.get("/v1/audit-log").await.json();
    let signed: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "model.sign")
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(signed, ["testrootorg/widget-yaml", "testrootorg/widget-20"]);
}

#[sqlx::test]
async fn a_role_scoped_key_signs_only_the_models_its_constraints_admit(pool: PgPool) {
    let (token, server) = setup(pool).await;
    let line = add_key(&server, &token, BRAND, "models-line", "developer1.pk8").await;
    let ak = account_key(
        BRAND,
        "models-line",
        &line,
        Some("\n  -\n    headers:\n      type: model\n      model: widget-.*"),
    );
    push_account_key(&server, BRAND, &line, &ak).await;
    let admin = Admin::start(&server, &token).await;

    let a = admin
        .post(
            "/v1/model-assertions",
            &json!({"statement": UC20, "key": "models-line"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let text = a.json()["assertion"].as_str().unwrap().to_string();
    let model = Model::try_from(decode(text.as_bytes()).unwrap()).unwrap();
    model
        .verify_with(&common::TestKey::load("developer1.pk8").public)
        .expect("signed by the role-scoped key");
    // snapd needs the key's account-key (the account is the trusted testrootorg). 2.57
    // decodes account-keys up to format 0, so the oracle gets the same key's account-key
    // without constraints (constraints only narrow; the chain and signature are the same).
    let ak0 = account_key(BRAND, "models-line", &line, None);
    assert!(!ak0.contains("constraints"));
    let v = oracle_model("scoped", text.as_bytes(), Some(ak0.as_bytes()));
    assert!(v.accepted, "snapd refused the model: {}", v.out);
    let v = oracle_model("no-chain", text.as_bytes(), None);
    assert!(!v.accepted, "{}", v.out);

    // Outside the key's role: 409 key-role-refused, over HTTP and through the CLI.
    let gizmo = UC20.replace("widget-20", "gizmo");
    let a = admin
        .post(
            "/v1/model-assertions",
            &json!({"statement": gizmo, "key": "models-line"}),
        )
        .await;
    a.assert_error(409, "key-role-refused");
    assert!(
        a.json()["message"]
            .as_str()
            .unwrap()
            .contains("model model=widget-.*")
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gizmo.json");
    std::fs::write(&file, &gizmo).unwrap();
    let out = admin
        .cli(&[
            "sign",
            "model",
            file.to_str().unwrap(),
            "--key",
            "models-line",
        ])
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("serialmint: key \"models-line\" may not sign this model"),
        "{err}"
    );
    assert!(err.contains("HTTP 409"), "{err}");

    // Two keys may sign widget-20 now: without --key the request must name one.
    let a = admin
        .post("/v1/model-assertions", &json!({"statement": UC20}))
        .await;
    a.assert_error(400, "key-required");
    // Only the brand key may sign gizmo: it is chosen.
    let a = admin
        .post("/v1/model-assertions", &json!({"statement": gizmo}))
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(a.json()["key-name"], KEY_NAME);
}

#[sqlx::test]
async fn statements_snapd_would_not_decode_are_refused(pool: PgPool) {
    let (token, server) = setup(pool).await;
    let admin = Admin::start(&server, &token).await;
    let cases = [
        (
            UC20.replace("\"architecture\": \"amd64\",", ""),
            "assertion model: \"architecture\" header is mandatory",
        ),
        (
            UC20.replace("\"grade\": \"signed\"", "\"grade\": \"gold\""),
            "grade for model must be secured|signed|dangerous",
        ),
        (
            UC20.replace("\"type\": \"kernel\",", ""),
            "one \"snaps\" header entry must specify the model kernel",
        ),
        (
            UC20.replace("\"series\": \"16\"", "\"series\": 16"),
            "header values must be strings",
        ),
        (
            UC20.replace(
                "\"type\": \"model\",",
                "\"type\": \"model\", \"authority-id\": \"acme\",",
            ),
            "authority-id is \"acme\" but the signing key belongs to \"testrootorg\"",
        ),
    ];
    for (statement, why) in cases {
        let a = admin
            .post(
                "/v1/model-assertions",
                &json!({"statement": statement, "key": KEY_NAME}),
            )
            .await;
        a.assert_error(400, "invalid-statement");
        let message = a.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains(why), "{message}");
    }
    // The CLI prints the same reason in one line.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(&file, UC20.replace("\"architecture\": \"amd64\",", "")).unwrap();
    let out = admin.cli(&["sign", "model", file.to_str().unwrap()]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("\"architecture\" header is mandatory"),
        "{err}"
    );
    assert!(err.contains("HTTP 400"), "{err}");
    // Nothing was signed.
    let log = admin.get("/v1/audit-log").await.json();
    assert!(
        !log["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "model.sign"),
        "{log}"
    );
}
