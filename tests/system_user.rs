//! `create system-user` / `POST /v1/system-users` end to end on a real SoftHSM token and a
//! real Postgres: system users for models signed here (`sign model`), each stream fed to
//! snapd 2.57's own Go code (`tests/snapd/accept_system_user.go`: the batch `snap
//! auto-import` commits, then the create-user checks of `daemon/api_users.go` for the
//! device's model and serial, then crypt(3) of the password against the hash), and every
//! refusal, over HTTP and through the real CLI.
//!
//! Run with `cargo nextest run --test system_user`.

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
use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use serialmint::assertion::{AssertionType, decode_stream};
use serialmint::store::{AssertionKind, NewAccountAssertion};
use sqlx::PgPool;

use admin::{Admin, account_key, add_key, push_account_key};
use device::*;

const PASSWORD: &str = "correct horse battery staple";

/// A UC20 model of the harness brand; `extra` adds headers (e.g. system-user-authority).
fn model_statement(name: &str, extra: &str) -> String {
    format!(
        r#"{{"type": "model", "series": "16", "model": "{name}", "architecture": "amd64",
        "base": "core20", "grade": "signed", {extra}
        "snaps": [
          {{"name": "pc", "type": "gadget", "default-channel": "20/stable",
           "id": "UqFziVZDHLSyO3TqSWgNBoAdHbLI4dAH"}},
          {{"name": "pc-kernel", "type": "kernel", "default-channel": "20/stable",
           "id": "pYVQrBcKmBa0mZ4CCN7ExT6jH8rY1hza"}},
          {{"name": "core20", "type": "base", "id": "DLqre5XGLbDqg9jPtiAhRRjDuPVa5X1q"}}]}}"#
    )
}

/// Signs a model with the brand key; returns the signed text.
async fn sign_model(admin: &Admin, name: &str, extra: &str) -> String {
    let a = admin
        .post(
            "/v1/model-assertions",
            &json!({"statement": model_statement(name, extra), "key": KEY_NAME, "brand-id": BRAND}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    a.json()["assertion"].as_str().unwrap().to_string()
}

/// snapd's verdict on `stream` for a device of `model` with `serial`, logging in with
/// `password` ("" = not checked).
fn oracle(model: &str, stream: &str, password: &str, serial: Option<&str>) -> oracle::Verdict {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        oracle::file(dir.path(), "model", model.as_bytes()).into_os_string(),
        oracle::file(dir.path(), "auto-import.assert", stream.as_bytes()).into_os_string(),
        oracle::file(dir.path(), "password", password.as_bytes()).into_os_string(),
    ];
    if let Some(s) = serial {
        args.push(s.into());
    }
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    oracle::run(dir.path(), "accept_system_user.go", &args, true)
}

#[sqlx::test]
async fn a_system_user_from_the_cli_is_accepted_by_snapd_with_its_password(pool: PgPool) {
    let (token, server) = setup(pool.clone()).await;
    let admin = Admin::start(&server, &token).await;
    let model = sign_model(&admin, "widget-20", "").await;

    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let out_file = dir.path().join("auto-import.assert");
    let out = admin
        .cli(&[
            "create",
            "system-user",
            "--model",
            "widget-20",
            "--email",
            "tech@acme.example",
            "--username",
            "tech",
            "--name",
            "Line Technician",
            "--password-file",
            pw.to_str().unwrap(),
            "--output",
            out_file.to_str().unwrap(),
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "with --output nothing is printed");
    let mode = std::fs::metadata(&out_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let stream = std::fs::read_to_string(&out_file).unwrap();

    // The stream is what auto-import reads: account, account-key, system-user.
    let parts = decode_stream(stream.as_bytes()).unwrap();
    let kinds: Vec<AssertionType> = parts.iter().map(|a| a.kind()).collect();
    assert_eq!(
        kinds,
        [
            AssertionType::Account,
            AssertionType::AccountKey,
            AssertionType::SystemUser
        ]
    );
    let su = &parts[2];
    assert_eq!(su.header_str("username"), Some("tech"));
    assert_eq!(su.header_str("brand-id"), Some(BRAND));
    let hash = su.header_str("password").unwrap();
    assert!(hash.starts_with("$6$rounds=100000$"), "{hash}");
    assert!(!stream.contains(PASSWORD));

    let v = oracle(&model, &stream, PASSWORD, None);
    assert!(v.accepted, "snapd refused the system user: {}", v.out);
    assert_eq!(
        v.out,
        format!("snapd accepted system-user tech for {BRAND}/widget-20\n")
    );
    // The oracle can fail: another password, another model.
    let v = oracle(&model, &stream, "wrong horse", None);
    assert!(
        !v.accepted && v.out.contains("crypt(3) does not verify"),
        "{}",
        v.out
    );
    let other = sign_model(&admin, "gizmo-20", "").await;
    let v = oracle(&other, &stream, PASSWORD, None);
    assert!(!v.accepted, "{}", v.out);
    assert!(v.out.contains("not in models [\"widget-20\"]"), "{}", v.out);

    // Logged (who, when, model, username, until) and audited; never the password or hash.
    let out = admin.cli(&["list", "system-users", "--json"]).await;
    assert!(out.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["username"], "tech");
    assert_eq!(listed[0]["model"], "widget-20");
    assert_eq!(listed[0]["issued-by"], "operator");
    let log = admin.get("/v1/audit-log").await.text();
    assert!(
        log.contains("\"system-user.create\"") && log.contains(&format!("{BRAND}/widget-20/tech")),
        "{log}"
    );
    let dump: Vec<(String,)> = sqlx::query_as(
        "SELECT row_to_json(s)::text FROM system_users s \
         UNION ALL SELECT row_to_json(a)::text FROM audit_log a",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (row,) in dump {
        assert!(!row.contains(PASSWORD) && !row.contains(hash), "{row}");
    }
}

#[sqlx::test]
async fn serials_bind_a_system_user_to_devices(pool: PgPool) {
    let (token, server) = setup(pool).await;
    let admin = Admin::start(&server, &token).await;
    let model = sign_model(&admin, "widget-20", "").await;
    let a = admin
        .post(
            "/v1/system-users",
            &json!({"model": "widget-20", "email": "fix@acme.example", "username": "fix",
                    "ssh-keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO0 fix@bench"],
                    "serials": ["SN-1", "SN-2"]}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/json"));
    let stream = a.json()["assertions"].as_str().unwrap().to_string();
    assert!(
        stream.contains("type: system-user\nformat: 1\n"),
        "{stream}"
    );
    assert!(!stream.contains("password:"));
    let v = oracle(&model, &stream, "", Some("SN-2"));
    assert!(v.accepted, "{}", v.out);
    let v = oracle(&model, &stream, "", Some("SN-3"));
    assert!(
        !v.accepted && v.out.contains("\"SN-3\" not in serials"),
        "{}",
        v.out
    );
    let v = oracle(&model, &stream, "", None);
    assert!(
        !v.accepted && v.out.contains("device not yet registered"),
        "{}",
        v.out
    );
}

#[sqlx::test]
async fn another_brand_signs_only_where_the_model_admits_it(pool: PgPool) {
    let (token, server) = setup(pool).await;
    // An ODM brand with its own key and account-key (signed by the test root).
    let odm = "odmbrand";
    let public = add_key(&server, &token, odm, "odm-key", "developer1.pk8").await;
    server
        .store
        .put_account_assertions(
            &[NewAccountAssertion {
                kind: AssertionKind::Account,
                primary_key: odm.into(),
                account_id: odm.into(),
                revision: 0,
                text: common::account_assertion(&common::TestKey::root(), odm),
            }],
            &admin(),
        )
        .await
        .unwrap();
    push_account_key(
        &server,
        odm,
        &public,
        &account_key(odm, "odm-key", &public, None),
    )
    .await;
    let admin = Admin::start(&server, &token).await;
    let closed = sign_model(&admin, "widget-20", "").await;
    let open = sign_model(
        &admin,
        "widget-odm",
        r#""system-user-authority": ["odmbrand"],"#,
    )
    .await;
    let body = |model: &str| {
        json!({"brand-id": odm, "model-brand-id": BRAND, "model": model,
               "email": "odm@odm.example", "username": "odm", "password": PASSWORD})
    };
    // widget-20 admits its brand only.
    let a = admin.post("/v1/system-users", &body("widget-20")).await;
    a.assert_error(409, "system-user-authority-refused");
    assert!(
        a.json()["message"]
            .as_str()
            .unwrap()
            .contains("admits system users signed by testrootorg only, not by odmbrand"),
        "{}",
        a.text()
    );
    // widget-odm lists the ODM: its stream carries the ODM's account and account-key.
    let a = admin.post("/v1/system-users", &body("widget-odm")).await;
    assert_eq!(a.status, 201, "{}", a.text());
    let stream = a.json()["assertions"].as_str().unwrap().to_string();
    assert!(
        stream.starts_with(&format!(
            "type: account\nauthority-id: testrootorg\naccount-id: {odm}\n"
        )),
        "{stream}"
    );
    let v = oracle(&open, &stream, PASSWORD, None);
    assert!(v.accepted, "{}", v.out);
    // Listed under the brand that signed it and under the model's brand, not under others.
    for (brand, n) in [(odm, 1), (BRAND, 1), ("nobody", 0)] {
        let listed = admin
            .get(&format!("/v1/system-users?brand-id={brand}"))
            .await
            .json();
        let items = listed["items"].as_array().unwrap();
        assert_eq!(items.len(), n, "{brand}: {listed}");
    }
    // snapd refuses the same stream on a device of the model that does not list the ODM
    // (the oracle can fail on the authority; the odd message is snapd 2.57's own format).
    let v = oracle(&closed, &stream, PASSWORD, None);
    assert!(
        !v.accepted && v.out.contains("not in accepted authorities \"odmbrand\""),
        "{}",
        v.out
    );
}

#[sqlx::test]
async fn refusals_are_clear_and_sign_nothing(pool: PgPool) {
    let (token, server) = setup(pool).await;
    // A key whose account-key admits models only.
    let line = add_key(&server, &token, BRAND, "models-only", "developer1.pk8").await;
    let ak = account_key(
        BRAND,
        "models-only",
        &line,
        Some("\n  -\n    headers:\n      type: model"),
    );
    push_account_key(&server, BRAND, &line, &ak).await;
    let admin = Admin::start(&server, &token).await;
    sign_model(&admin, "widget-20", "").await;
    let base = json!({"model": "widget-20", "email": "t@acme.example", "username": "t",
                      "password": PASSWORD, "key": KEY_NAME});
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut b = base.clone();
        f(&mut b);
        b
    };
    let cases: Vec<(serde_json::Value, u16, &str, &str)> = vec![
        (
            with(&|b| b["model"] = json!("never-signed")),
            409,
            "model-assertion-unknown",
            "sign it with `serialmint sign model` first",
        ),
        (
            with(&|b| {
                b.as_object_mut().unwrap().remove("password");
            }),
            400,
            "credentials-required",
            "a password or an ssh key",
        ),
        (
            with(&|b| {
                b["since"] = json!("2027-01-01T00:00:00Z");
                b["until"] = json!("2026-06-01T00:00:00Z");
            }),
            400,
            "invalid-period",
            "must be after since",
        ),
        (
            with(&|b| b["username"] = json!("Not A Name")),
            400,
            "invalid-system-user",
            "\"username\"",
        ),
        (
            with(&|b| b["key"] = json!("models-only")),
            409,
            "key-role-refused",
            "may not sign system users of model testrootorg/widget-20",
        ),
    ];
    for (body, status, code, why) in cases {
        let a = admin.post("/v1/system-users", &body).await;
        a.assert_error(status, code);
        let message = a.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains(why), "{code}: {message}");
        assert!(!message.contains(PASSWORD), "{message}");
    }
    // The CLI: one line, the server's reason.
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    let out = admin
        .cli(&[
            "create",
            "system-user",
            "--model",
            "widget-20",
            "--email",
            "t@acme.example",
            "--username",
            "t",
            "--password-file",
            pw.to_str().unwrap(),
            "--key",
            "models-only",
        ])
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("HTTP 409"), "{err}");
    // Neither password nor ssh key: clap refuses before anything is sent.
    let out = admin
        .cli(&[
            "create",
            "system-user",
            "--model",
            "widget-20",
            "--email",
            "t@acme.example",
            "--username",
            "t",
        ])
        .await;
    assert!(!out.status.success());
    // Nothing was issued.
    let listed = admin.get("/v1/system-users").await.json();
    assert_eq!(listed["items"], json!([]), "{listed}");
}
