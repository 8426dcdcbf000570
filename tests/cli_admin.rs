//! The admin CLI end to end: the real `serialmint` binary runs `serve` on a fresh SoftHSM
//! token and a fresh Postgres database, and the admin verbs drive it exactly as the README's
//! factory walkthrough does: init, create key, register-key, push-account-keys (signed by
//! snapd's test root, the configured trusted root), create model, create serial-policy, list
//! models; then a key rotation shows both policy revisions.

mod common;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{TestKey, fixture, free_port, wait_for_port};
use serde_json::Value;
use serialmint::assertion::headers::Headers;
use serialmint::assertion::{AccountKeyRequest, AssertionType, build_content, decode};
use softhsm::{SoftHsm, softhsm_module};
use sqlx::PgPool;

const PIN: &str = "4321-cli-test";
const LABEL: &str = "cli-test";

struct Server {
    child: Child,
    admin_url: String,
    env: Vec<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Runs `serialmint ARGS` with the server's environment and `token` as the admin token.
    fn run(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_serialmint"));
        cmd.args(args)
            .env_clear()
            .envs(self.env.iter().cloned())
            .env("SERIALMINT_ADMIN_URL", &self.admin_url)
            .stdin(Stdio::null());
        if let Some(t) = token {
            cmd.env("SERIALMINT_ADMIN_TOKEN", t);
        }
        cmd.output().expect("run serialmint")
    }

    fn ok(&self, token: Option<&str>, args: &[&str]) -> String {
        let out = self.run(token, args);
        assert!(
            out.status.success(),
            "serialmint {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, token: Option<&str>, args: &[&str]) -> Value {
        let text = self.ok(token, args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }
}

/// The URL of the per-test database `#[sqlx::test]` made.
fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let db = pool
        .connect_options()
        .get_database()
        .expect("a database name")
        .to_string();
    let (server, _) = base.rsplit_once('/').expect("a URL with a database path");
    format!("{server}/{db}")
}

fn start(pool: &PgPool, hsm: &SoftHsm, trusted: &Path) -> Server {
    let device = free_port();
    let admin = free_port();
    let env: Vec<(String, String)> = vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("SOFTHSM2_CONF".into(), hsm.conf.display().to_string()),
        ("SERIALMINT_DATABASE_URL".into(), database_url(pool)),
        (
            "SERIALMINT_PKCS11_MODULE".into(),
            softhsm_module().display().to_string(),
        ),
        ("SERIALMINT_TOKEN_LABEL".into(), LABEL.into()),
        ("SERIALMINT_TOKEN_PIN".into(), PIN.into()),
        ("SERIALMINT_HSM_SESSIONS".into(), "1".into()),
        (
            "SERIALMINT_TRUSTED_ASSERTIONS".into(),
            trusted.display().to_string(),
        ),
        ("SERIALMINT_LOG".into(), "warn".into()),
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_serialmint"))
        .args(["serve", "--device-listen", &format!("127.0.0.1:{device}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .env_clear()
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serialmint serve starts");
    let server = Server {
        child,
        admin_url: format!("http://127.0.0.1:{admin}"),
        env,
    };
    assert!(
        wait_for_port(admin, Duration::from_secs(60)),
        "the admin listener did not come up"
    );
    server
}

fn now_rfc3339() -> String {
    serialmint::assertion::time::format_utc(time::OffsetDateTime::now_utc())
}

/// An `account` for `account_id` and an `account-key` for the key in `request`, both
/// signed by `signer` as the test root `testrootorg`.
fn store_answer(signer: &TestKey, account_id: &str, request: &AccountKeyRequest) -> String {
    let root_id = TestKey::root().public.key_id();
    let created = time::OffsetDateTime::now_utc().unix_timestamp() as u32;
    let mut h = Headers::new();
    h.insert("authority-id".into(), "testrootorg".into());
    h.insert("account-id".into(), account_id.into());
    h.insert("display-name".into(), "Acme Devices".into());
    h.insert("validation".into(), "verified".into());
    h.insert("timestamp".into(), now_rfc3339().into());
    let account = signer.sign(
        &build_content(AssertionType::Account, &h, "", &root_id).unwrap(),
        created,
    );
    let mut h = Headers::new();
    h.insert("authority-id".into(), "testrootorg".into());
    h.insert("account-id".into(), account_id.into());
    h.insert("name".into(), request.name().unwrap().into());
    h.insert("public-key-sha3-384".into(), request.public_key_id().into());
    h.insert("since".into(), now_rfc3339().into());
    let key = signer.sign(
        &build_content(
            AssertionType::AccountKey,
            &h,
            &request.public_key().encode(),
            &root_id,
        )
        .unwrap(),
        created,
    );
    format!(
        "{}\n{}",
        String::from_utf8(account).unwrap(),
        String::from_utf8(key).unwrap()
    )
}

#[sqlx::test]
async fn factory_walkthrough_and_key_rotation(pool: PgPool) {
    let hsm = SoftHsm::new();
    hsm.init_token(LABEL, PIN);
    let trusted = hsm.path("trusted.assertions");
    let mut roots = fixture("snapd/testrootorg.account");
    roots.extend_from_slice(b"\n");
    roots.extend_from_slice(&fixture("snapd/testrootorg.account-key"));
    std::fs::write(&trusted, roots).unwrap();
    let s = start(&pool, &hsm, &trusted);

    // init: directly in the database; the token is printed once.
    let init = s.json(None, &["init", "--brand-id", "acme", "--json"]);
    assert_eq!(init["brand-id"], "acme");
    let token = init["admin-token"].as_str().unwrap().to_string();
    let t = Some(token.as_str());

    // Without a token: one clear line, non-zero exit.
    let out = s.run(None, &["list", "keys"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("SERIALMINT_ADMIN_TOKEN"), "{err}");
    let out = s.run(Some("smt_wrong"), &["list", "keys"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));

    // create key: generated on the SoftHSM token.
    let key = s.json(t, &["create", "key", "serial-key", "--json"]);
    assert_eq!(key["name"], "serial-key");
    let key_id = key["sha3-384"].as_str().unwrap().to_string();
    assert_eq!(key_id.len(), 64);
    let listed = s.ok(t, &["list", "keys"]);
    assert!(
        listed.contains("serial-key") && listed.contains(&key_id),
        "{listed}"
    );

    // register-key: the account-key-request, self-signed by the key on the token.
    let text = s.ok(t, &["register-key", &key_id]);
    let request = AccountKeyRequest::try_from(decode(text.as_bytes()).unwrap()).unwrap();
    request.verify_self_signature().unwrap();
    assert_eq!(request.account_id(), "acme");
    assert_eq!(request.public_key_id(), key_id);

    // push-account-keys: a forged answer is refused and names the assertion.
    let forged = hsm.path("forged.assertions");
    std::fs::write(&forged, store_answer(&TestKey::store(), "acme", &request)).unwrap();
    let out = s.run(t, &["push-account-keys", forged.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused account"), "{err}");
    assert!(err.contains("HTTP 400"), "{err}");
    let genuine = hsm.path("account-keys.assertions");
    std::fs::write(&genuine, store_answer(&TestKey::root(), "acme", &request)).unwrap();
    let pushed = s.ok(t, &["push-account-keys", genuine.to_str().unwrap()]);
    assert!(pushed.contains("Accepted account acme"), "{pushed}");
    assert!(
        pushed.contains(&format!("Accepted account-key {key_id}")),
        "{pushed}"
    );

    // create model with a given key, and one with a generated key.
    let model = s.json(
        t,
        &[
            "create",
            "model",
            "widget",
            "--api-key",
            "widget-factory-key-0001",
            "--json",
        ],
    );
    assert_eq!(model["name"], "widget");
    assert_eq!(model["api-key"], "widget-factory-key-0001");
    let other = s.json(
        t,
        &[
            "create",
            "model",
            "gadget",
            "--generate-api-key",
            "--rate-limit",
            "20",
            "--duplicate-policy",
            "reissue",
            "--serial-generation",
            "prefix-counter",
            "--serial-prefix",
            "G-",
            "--json",
        ],
    );
    assert!(other["api-key"].as_str().unwrap().len() >= 32);
    let client = serialmint::cli::client::Client::new(&s.admin_url, Some(token.clone())).unwrap();
    let gadget = client.get_json("/v1/models/gadget").await.unwrap();
    assert_eq!(gadget["rate-limit"]["per-second"], 20);
    assert_eq!(gadget["duplicate-policy"], "reissue");
    assert_eq!(gadget["serial-generation"], "prefix-counter");
    assert_eq!(gadget["serial-prefix"], "G-");
    // Missing arguments without a terminal: one clear line.
    let out = s.run(t, &["create", "serial-policy", "--key", &key_id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--model is required"), "{err}");

    let p1 = s.json(
        t,
        &[
            "create",
            "serial-policy",
            "--model",
            "widget",
            "--key",
            &key_id,
            "--json",
        ],
    );
    assert_eq!(p1["model"], "widget");
    assert_eq!(p1["key"], key_id.as_str());
    assert_eq!(p1["revision"], 1);
    let models = s.ok(t, &["list", "models"]);
    let widget_line = models.lines().find(|l| l.contains("widget")).unwrap();
    assert!(widget_line.contains("widget-factory-key-0001"), "{models}");
    assert!(widget_line.contains(&key_id), "{models}");

    // Rotation: a second key, a second revision; list models shows the new key, the history
    // both revisions.
    let key2 = s.json(t, &["create", "key", "serial-key-2", "--json"]);
    let key2_id = key2["sha3-384"].as_str().unwrap().to_string();
    assert_ne!(key2_id, key_id);
    let p2 = s.json(
        t,
        &[
            "create",
            "serial-policy",
            "--model",
            "widget",
            "--key",
            &key2_id,
            "--json",
        ],
    );
    assert_eq!(p2["revision"], 2);
    let models = s.ok(t, &["list", "models"]);
    let widget_line = models.lines().find(|l| l.contains("widget")).unwrap();
    assert!(widget_line.contains(&key2_id), "{models}");
    assert!(!widget_line.contains(&key_id), "{models}");
    let history = s.json(
        t,
        &["list", "serial-policies", "--model", "widget", "--json"],
    );
    let revisions: Vec<(i64, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["revision"].as_i64().unwrap(),
                p["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(revisions, [(2, key2_id.clone()), (1, key_id.clone())]);
    let table = s.ok(t, &["list", "serial-policies", "--model", "widget"]);
    assert_eq!(
        table.lines().filter(|l| l.contains("widget")).count(),
        2,
        "{table}"
    );

    // A read-only token reads but changes nothing; a revoked one stops working.
    let ro = s.json(
        t,
        &[
            "create",
            "token",
            "auditor",
            "--role",
            "read-only",
            "--json",
        ],
    );
    assert_eq!(ro["role"], "read-only");
    let ro_token = ro["token"].as_str().unwrap().to_string();
    assert!(
        s.ok(Some(&ro_token), &["list", "models"])
            .contains("widget")
    );
    let out = s.run(
        Some(&ro_token),
        &["create", "model", "sneaky", "--generate-api-key"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 403"));
    let tokens = s.json(t, &["list", "tokens", "--json"]);
    let auditor = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "auditor")
        .unwrap()
        .clone();
    assert!(
        !tokens.to_string().contains(&ro_token),
        "secrets are never listed"
    );
    client
        .send_json(
            hyper::Method::POST,
            &format!("/v1/tokens/{}/revoke", auditor["id"]),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    let out = s.run(Some(&ro_token), &["list", "models"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));

    // Nothing issued yet: the exports are empty but well-formed.
    let csv = s.ok(t, &["export", "signing-log", "--format", "csv"]);
    assert_eq!(csv.lines().count(), 1, "{csv}");
    let json = s.json(t, &["export", "signing-log", "--format", "json"]);
    assert_eq!(json, serde_json::json!([]));
    assert!(
        s.ok(t, &["list", "serials", "--model", "widget"])
            .contains("No serials")
    );
}

#[test]
fn serve_says_in_one_line_when_postgres_is_unreachable() {
    let out = Command::new(env!("CARGO_BIN_EXE_serialmint"))
        .args([
            "serve",
            "--device-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .env_clear()
        .env(
            "SERIALMINT_DATABASE_URL",
            "postgres://someone:hunter2-secret@127.0.0.1:1/nowhere",
        )
        .env("SERIALMINT_TOKEN_PIN", "1234")
        .env("SERIALMINT_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cannot connect to Postgres"), "{err}");
    assert!(!err.contains("hunter2"), "the password leaked: {err}");
}

/// The token is not there when `serve` starts: key creation fails with the reason; once the
/// token exists, the server's background retry opens it and the same command succeeds, with
/// no restart.
#[sqlx::test]
async fn key_creation_works_once_a_late_hsm_opens(pool: PgPool) {
    let hsm = SoftHsm::new();
    let trusted = hsm.path("trusted.assertions");
    let mut roots = fixture("snapd/testrootorg.account");
    roots.extend_from_slice(b"\n");
    roots.extend_from_slice(&fixture("snapd/testrootorg.account-key"));
    std::fs::write(&trusted, roots).unwrap();
    let s = start(&pool, &hsm, &trusted);
    let init = s.json(None, &["init", "--brand-id", "acme", "--json"]);
    let token = init["admin-token"].as_str().unwrap().to_string();
    let t = Some(token.as_str());

    let out = s.run(t, &["create", "key", "late-key"]);
    assert!(!out.status.success(), "a key was made without a token");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HSM not open"), "{err}");
    assert!(!err.contains(PIN), "the PIN leaked: {err}");

    hsm.init_token(LABEL, PIN);
    // The server retries opening the HSM every 5 s; give it generous time on a loaded box.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let key = loop {
        let out = s.run(t, &["create", "key", "late-key", "--json"]);
        if out.status.success() {
            break serde_json::from_slice::<Value>(&out.stdout).unwrap();
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("HSM not open"), "{err}");
        assert!(
            std::time::Instant::now() < deadline,
            "the HSM never opened: {err}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(key["name"], "late-key");
    assert_eq!(key["sha3-384"].as_str().unwrap().len(), 64);
}
