//! The admin CLI end to end: the real `serialmint` binary runs `serve` on a fresh SoftHSM
//! token and a fresh Postgres database, and the admin verbs drive it exactly as the README's
//! factory walkthrough does: init, create key, register-key, push-account-keys (signed by
//! snapd's test root, the configured trusted root), create model, create serial-policy, list
//! models; then a key rotation shows both policy revisions.

mod common;
#[path = "common/serve.rs"]
mod serve;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::path::Path;
use std::process::Command;

use common::{TestKey, account_assertion, account_key_assertion, fixture, free_port};
use serialmint::assertion::{AccountKeyRequest, decode};
use serve::Serve;
use softhsm::SoftHsm;
use sqlx::PgPool;

const PIN: &str = "4321-cli-test";
const LABEL: &str = "cli-test";

/// The trusted roots file (testrootorg's account and root account-key) in `hsm`'s directory.
fn trusted_roots(hsm: &SoftHsm) -> std::path::PathBuf {
    let trusted = hsm.path("trusted.assertions");
    let mut roots = fixture("snapd/testrootorg.account");
    roots.extend_from_slice(b"\n");
    roots.extend_from_slice(&fixture("snapd/testrootorg.account-key"));
    std::fs::write(&trusted, roots).unwrap();
    trusted
}

fn start(pool: &PgPool, hsm: &SoftHsm, trusted: &Path) -> Serve {
    let mut env = serve::env(pool, hsm, LABEL, PIN, Some(trusted), "warn");
    serve::set(&mut env, "SERIALMINT_HSM_SESSIONS", "1");
    Serve::start(env)
}

/// What the store answers to `request`: an `account` for `account_id` and the `account-key`,
/// both signed by `signer` as the test root `testrootorg`.
fn store_answer(signer: &TestKey, account_id: &str, request: &AccountKeyRequest) -> String {
    format!(
        "{}\n{}",
        account_assertion(signer, account_id),
        account_key_assertion(signer, account_id, request)
    )
}

#[sqlx::test]
async fn factory_walkthrough_and_key_rotation(pool: PgPool) {
    let hsm = SoftHsm::new();
    hsm.init_token(LABEL, PIN);
    let trusted = trusted_roots(&hsm);
    let s = start(&pool, &hsm, &trusted);

    // init: directly in the database; the token is printed once.
    let init = s.json(None, &["init", "--brand-id", "acme", "--json"]);
    assert_eq!(init["brand-id"], "acme");
    let token = init["admin-token"].as_str().unwrap().to_string();
    let t = Some(token.as_str());
    // Once: init again makes no second admin token, unless asked to (every token lost).
    let again = s.json(None, &["init", "--brand-id", "acme", "--json"]);
    assert!(again["admin-token"].is_null(), "{again}");
    assert_eq!(again["active-admin-tokens"], 1);
    let text = s.ok(None, &["init", "--brand-id", "acme"]);
    assert!(text.contains("none was created"), "{text}");
    let lost = s.json(
        None,
        &["init", "--brand-id", "acme", "--new-token", "--json"],
    );
    let second = lost["admin-token"].as_str().unwrap();
    assert_ne!(second, token);
    assert!(s.run(Some(second), &["list", "keys"]).status.success());

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
    // Roles come from the pushed account-key: none pushed yet.
    assert!(listed.contains("not registered"), "{listed}");

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
    // Its account-key has no constraints: the key may sign anything.
    let keys = s.json(t, &["list", "keys", "--json"]);
    assert_eq!(keys[0]["roles"], "any", "{keys}");

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
    // list models names the active key as store-admin does; --long shows its SHA3-384.
    let models = s.ok(t, &["list", "models"]);
    let widget_line = models.lines().find(|l| l.contains("widget")).unwrap();
    assert!(widget_line.contains("widget-factory-key-0001"), "{models}");
    assert!(widget_line.trim_end().ends_with("serial-key"), "{models}");
    let models = s.ok(t, &["list", "models", "--long"]);
    let widget_line = models.lines().find(|l| l.contains("widget")).unwrap();
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
    assert!(widget_line.trim_end().ends_with("serial-key-2"), "{models}");
    let models = s.ok(t, &["list", "models", "--long"]);
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
    let trusted = trusted_roots(&hsm);
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let key = loop {
        let out = s.run(t, &["create", "key", "late-key", "--json"]);
        if out.status.success() {
            break serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("HSM not open"), "{err}");
        assert!(
            std::time::Instant::now() < deadline,
            "the HSM never opened: {err}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(key["name"], "late-key");
    assert_eq!(key["sha3-384"].as_str().unwrap().len(), 64);
}

/// `hsm.more_tokens`: a second token holding the same key (imported into both, as a vendor's
/// key cloning would) is opened by `serve` with its own PIN and put in rotation beside the
/// first: each token's `hsm_token_up` gauge reads 1. (Signing across several tokens, and one
/// failing while the other goes on, is tested on the HSM layer in tests/hsm_p11kit.rs.)
#[sqlx::test]
async fn serve_opens_every_configured_token(pool: PgPool) {
    use std::io::{Read, Write};
    let hsm = SoftHsm::new();
    hsm.init_token(LABEL, PIN);
    hsm.init_token("usb-2", "8765-second");
    let key_file = softhsm::write_rsa_key(hsm.dir.path(), 2048, false);
    let a = hsm.import_key(LABEL, PIN, &key_file, "shared");
    let b = hsm.import_key("usb-2", "8765-second", &key_file, "shared");
    assert_eq!(a, b, "the same key on both tokens");
    let trusted = trusted_roots(&hsm);
    let mut env = serve::env(&pool, &hsm, LABEL, PIN, Some(&trusted), "warn");
    serve::set(&mut env, "SERIALMINT_HSM_SESSIONS", "1");
    serve::set(&mut env, "SERIALMINT_HSM_MORE_TOKENS", "usb-2");
    serve::set(&mut env, "SERIALMINT_HSM_MORE_PINS", "8765-second");
    let s = Serve::start(env);
    let init = s.json(None, &["init", "--brand-id", "acme", "--json"]);
    let token = init["admin-token"].as_str().unwrap().to_string();
    let metrics = || {
        let mut c = std::net::TcpStream::connect(s.admin).unwrap();
        write!(
            c,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    };
    let m = metrics();
    for label in [LABEL, "usb-2"] {
        let line = format!("hsm_token_up{{token=\"{label}\"}} 1");
        assert!(m.contains(&line), "no `{line}` in:\n{m}");
    }
    assert!(!m.contains("8765-second") && !s.logs().contains("8765-second"));
}

/// `serialmint export signing-log | head -1`: the reader goes away after one line. The CLI
/// stops quietly with status 0 (no "Broken pipe" line, no panic), for the streamed export in
/// both formats and for an ordinary listing too.
#[sqlx::test]
async fn output_into_a_pipe_closed_early_ends_quietly(pool: PgPool) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let hsm = SoftHsm::new();
    hsm.init_token(LABEL, PIN);
    let trusted = trusted_roots(&hsm);
    let s = start(&pool, &hsm, &trusted);
    let init = s.json(None, &["init", "--brand-id", "acme", "--json"]);
    let token = init["admin-token"].as_str().unwrap().to_string();
    s.json(
        Some(&token),
        &["create", "model", "widget", "--generate-api-key", "--json"],
    );
    // About 8 MiB of signing log: far more than a pipe holds.
    sqlx::query(
        "INSERT INTO signing_log (brand_id, model_id, model_name, serial, device_key_id, \
         request_id, signing_key_id, instance, serial_assertion) \
         SELECT 'acme', m.id, 'widget', 'SN' || n, 'dev' || n, 'req' || n, 'key', 't', \
         repeat('x', 2048) FROM models m, generate_series(1, 4000) n WHERE m.name = 'widget'",
    )
    .execute(&pool)
    .await
    .unwrap();

    for args in [
        &["export", "signing-log"][..],
        &["export", "signing-log", "--format", "json"],
        &["list", "serials", "--limit", "4000", "--json"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_serialmint"))
            .args(args)
            .env_clear()
            .envs(s.env.iter().cloned())
            .env("SERIALMINT_ADMIN_URL", &s.admin_url)
            .env("SERIALMINT_ADMIN_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        {
            // Read one line, then close the pipe (as `head -1` does).
            let mut reader = BufReader::new(child.stdout.take().unwrap());
            reader.read_line(&mut first).unwrap();
        }
        assert!(!first.is_empty(), "{args:?}: no first line");
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?}: {err}", out.status);
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

/// The lifecycle verbs, end to end through the binary: disable/enable a key and a model,
/// set an API key, push account keys from two files at once, revoke a token, delete a model,
/// and read each change back from `list audit-log`.
#[sqlx::test]
async fn lifecycle_verbs_change_state_and_are_audited(pool: PgPool) {
    let hsm = SoftHsm::new();
    hsm.init_token(LABEL, PIN);
    let trusted = trusted_roots(&hsm);
    let s = start(&pool, &hsm, &trusted);
    let init = s.json(None, &["init", "--brand-id", "acme", "--json"]);
    let token = init["admin-token"].as_str().unwrap().to_string();
    let t = Some(token.as_str());

    let key = s.json(t, &["create", "key", "line-key", "--json"]);
    let key_id = key["sha3-384"].as_str().unwrap().to_string();
    s.ok(
        t,
        &[
            "create",
            "model",
            "widget",
            "--api-key",
            "widget-factory-key-0001",
        ],
    );
    s.ok(t, &["create", "model", "spare", "--generate-api-key"]);

    // push-account-keys: the account and the account-key from two files, one push.
    let text = s.ok(t, &["register-key", &key_id]);
    let request = AccountKeyRequest::try_from(decode(text.as_bytes()).unwrap()).unwrap();
    let account = hsm.path("acme.account");
    std::fs::write(&account, account_assertion(&TestKey::root(), "acme")).unwrap();
    let account_key = hsm.path("acme.account-key");
    std::fs::write(
        &account_key,
        account_key_assertion(&TestKey::root(), "acme", &request),
    )
    .unwrap();
    let pushed = s.ok(
        t,
        &[
            "push-account-keys",
            account.to_str().unwrap(),
            account_key.to_str().unwrap(),
        ],
    );
    assert!(pushed.contains("Accepted account acme"), "{pushed}");
    assert!(pushed.contains(&key_id), "{pushed}");
    // A file that is not an assertion stream is named, and nothing is sent.
    let junk = hsm.path("junk.txt");
    std::fs::write(&junk, "hello\n").unwrap();
    let out = s.run(t, &["push-account-keys", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("junk.txt is not an assertion stream"), "{err}");

    // disable / enable key and model: the state changes and the answer says so.
    let off = s.json(t, &["disable", "key", &key_id, "--json"]);
    assert_eq!(off["enabled"], false, "{off}");
    let keys = s.json(t, &["list", "keys", "--json"]);
    assert_eq!(keys[0]["active"], false, "{keys}");
    let on = s.json(t, &["enable", "key", "line-key", "--json"]);
    assert_eq!(on["enabled"], true, "{on}");
    let keys = s.json(t, &["list", "keys", "--json"]);
    assert_eq!(keys[0]["active"], true, "{keys}");
    let text = s.ok(t, &["disable", "model", "widget"]);
    assert_eq!(text.trim(), "Model widget is disabled.");
    let models = s.json(t, &["list", "models", "--json"]);
    let widget = |m: &serde_json::Value| m["name"] == "widget";
    let w = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| widget(m))
        .unwrap();
    assert_eq!(w["enabled"], false, "{models}");
    s.ok(t, &["enable", "model", "widget"]);
    let models = s.json(t, &["list", "models", "--json"]);
    let w = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| widget(m))
        .unwrap();
    assert_eq!(w["enabled"], true, "{models}");
    let out = s.run(t, &["disable", "model", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 404"));

    // set api-key: given, then generated.
    let set = s.json(
        t,
        &[
            "set",
            "api-key",
            "--model",
            "widget",
            "--api-key",
            "widget-factory-key-0002",
            "--json",
        ],
    );
    assert_eq!(set["api-key"], "widget-factory-key-0002", "{set}");
    let generated = s.json(
        t,
        &[
            "set",
            "api-key",
            "--model",
            "widget",
            "--generate",
            "--json",
        ],
    );
    let new_key = generated["api-key"].as_str().unwrap();
    assert!(new_key.len() >= 32 && new_key != "widget-factory-key-0002");

    // revoke token: it stops working at once.
    let extra = s.json(t, &["create", "token", "ops", "--json"]);
    let extra_token = extra["token"].as_str().unwrap().to_string();
    assert!(
        s.run(Some(&extra_token), &["list", "keys"])
            .status
            .success()
    );
    let tokens = s.json(t, &["list", "tokens", "--json"]);
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "ops")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let revoked = s.json(t, &["revoke", "token", &id.to_string(), "--json"]);
    assert_eq!(revoked["revoked"], id);
    let out = s.run(Some(&extra_token), &["list", "keys"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));

    // delete model: gone from the list.
    let deleted = s.json(t, &["delete", "model", "spare", "--json"]);
    assert_eq!(deleted["deleted"], "spare");
    let models = s.ok(t, &["list", "models"]);
    assert!(!models.contains("spare"), "{models}");

    // list audit-log: every change above, newest first; --since in the future: none.
    let audit = s.json(t, &["list", "audit-log", "--limit", "50", "--json"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in ["key.disable", "key.enable", "token.revoke", "model.delete"] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    let table = s.ok(t, &["list", "audit-log", "--limit", "1"]);
    assert_eq!(table.lines().count(), 2, "{table}");
    let none = s.ok(t, &["list", "audit-log", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(none.trim(), "No audit entries.");
}

/// Several brands in one vault: `create brand`, `list brands`, and `--brand` choosing which
/// one a verb acts for; without it, the server names the brands to choose from.
#[sqlx::test]
async fn several_brands_are_chosen_with_brand(pool: PgPool) {
    let hsm = SoftHsm::new();
    hsm.init_token(LABEL, PIN);
    let trusted = trusted_roots(&hsm);
    let s = start(&pool, &hsm, &trusted);
    let init = s.json(None, &["init", "--brand-id", "acme", "--json"]);
    let token = init["admin-token"].as_str().unwrap().to_string();
    let t = Some(token.as_str());

    // One brand: no --brand needed.
    s.ok(
        t,
        &[
            "create",
            "model",
            "solo",
            "--api-key",
            "solo-factory-key-0001",
        ],
    );
    let created = s.json(t, &["create", "brand", "globex", "--json"]);
    assert_eq!(created["brand-id"], "globex");
    let out = s.run(t, &["create", "brand", "globex"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 409"));
    let brands = s.json(t, &["list", "brands", "--json"]);
    let names: Vec<&str> = brands
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["account-id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "globex"]);

    // Two brands: a verb that names no brand is refused, naming both.
    let out = s.run(
        t,
        &[
            "create",
            "model",
            "widget",
            "--api-key",
            "widget-factory-key-0001",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("acme, globex") && err.contains("--brand"),
        "{err}"
    );

    // --brand picks one; the same model name may exist under each brand.
    for brand in ["globex", "acme"] {
        s.ok(
            t,
            &[
                "--brand",
                brand,
                "create",
                "model",
                "widget",
                "--api-key",
                &format!("{brand}-widget-key-0001"),
            ],
        );
    }
    let globex = s.json(t, &["list", "models", "--brand", "globex", "--json"]);
    assert_eq!(globex.as_array().unwrap().len(), 1, "{globex}");
    assert_eq!(globex[0]["api-key"], "globex-widget-key-0001");
    let all = s.json(t, &["list", "models", "--json"]);
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");

    // Lifecycle verbs act on the named brand's model only.
    let out = s.run(t, &["disable", "model", "widget"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("acme, globex"));
    s.ok(t, &["disable", "model", "widget", "--brand", "globex"]);
    let acme = s.json(t, &["list", "models", "--brand", "acme", "--json"]);
    let widget = acme
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "widget")
        .unwrap();
    assert_eq!(widget["enabled"], true, "{acme}");
    let globex = s.json(t, &["list", "models", "--brand", "globex", "--json"]);
    assert_eq!(globex[0]["enabled"], false, "{globex}");

    // A token limited to globex: its verbs act for globex without --brand; acme's models,
    // the tokens, the audit log and new brands are out of its reach (403).
    let limited = s.json(
        t,
        &[
            "create",
            "token",
            "globex-ops",
            "--role",
            "admin",
            "--brand",
            "globex",
            "--json",
        ],
    );
    assert_eq!(
        limited["brands"],
        serde_json::json!(["globex"]),
        "{limited}"
    );
    let lt = limited["token"].as_str().unwrap().to_string();
    let l = Some(lt.as_str());
    let seen = s.json(l, &["list", "models", "--json"]);
    assert_eq!(seen.as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(seen[0]["api-key"], "globex-widget-key-0001");
    s.ok(l, &["enable", "model", "widget"]);
    s.ok(
        l,
        &[
            "create",
            "model",
            "gizmo",
            "--api-key",
            "globex-gizmo-key-0001",
        ],
    );
    let globex = s.json(t, &["list", "models", "--brand", "globex", "--json"]);
    assert_eq!(globex.as_array().unwrap().len(), 2, "{globex}");
    let acme = s.json(t, &["list", "models", "--brand", "acme", "--json"]);
    assert_eq!(acme.as_array().unwrap().len(), 2, "{acme}");
    for args in [
        &["list", "models", "--brand", "acme"][..],
        &["disable", "model", "widget", "--brand", "acme"],
        &["list", "tokens"],
        &["list", "audit-log"],
        &["create", "brand", "initech"],
    ] {
        let out = s.run(l, args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("HTTP 403") && err.contains("globex"),
            "{args:?}: {err}"
        );
    }
    let tokens = s.ok(t, &["list", "tokens"]);
    let line = tokens.lines().find(|l| l.contains("globex-ops")).unwrap();
    assert!(line.contains("globex"), "{tokens}");
    let audit = s.json(t, &["list", "audit-log", "--json"]);
    let created = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "token.create" && e["target"] == "globex-ops")
        .unwrap();
    assert_eq!(created["detail"]["brands"], serde_json::json!(["globex"]));
}
