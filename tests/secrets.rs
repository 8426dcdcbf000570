//! Secrets never leak: a whole session against the real `serialmint serve` binary with debug
//! logging, on a fresh SoftHSM token and a fresh Postgres database: bootstrap (`init` -> admin
//! token), a key generated on the token, its account-key pushed, a model with a generated API
//! key, a serial policy, serials, and errors (wrong API keys, wrong and read-only admin
//! tokens, a secret sent in the wrong place, a wrong token PIN, a wrong database password).
//! Then the server's stdout and stderr, every HTTP error body and every CLI output are
//! searched for the token PIN, the SO PIN, the database password, the admin tokens and the API
//! keys, and none may hold any.
//!
//! The only outputs not searched are the ones whose job is to show a newly created secret,
//! once: `init` (the first admin token), `create token` (a new token) and `create model
//! --generate-api-key` (the new API key). `list models` shows API keys by design (a read of
//! the model's configuration, like store-admin's) and is not run here.
//!
//! Run with `cargo nextest run` (one process per test: SoftHSM is process-wide).

mod common;
#[path = "common/device.rs"]
mod device;
#[path = "common/serve.rs"]
mod serve;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serialmint::assertion::{AccountKeyRequest, AssertionType, Serial, decode, decode_stream};
use sqlx::PgPool;

use common::{TestKey, account_key_assertion};
use device::{Answer, BRAND, MODEL, ReqSpec, body, device_key, request, trust_file, try_request};
use serve::Serve;
use softhsm::SoftHsm;

const LABEL: &str = "secrets-test";
const PIN: &str = "Pin-q7Wz3kR9xM";
const WRONG_PIN: &str = "Wrong-pin-5tGhJ2";
const WRONG_DB_PASSWORD: &str = "Wrong-db-pw-8uYtR4eW";
const WRONG_API_KEY: &str = "Wrong-api-key-3vBn7QpL";
const WRONG_ADMIN_TOKEN: &str = "smt_Wrong-admin-token-6KdS0aZx";

/// Everything the session produced that must not hold a secret, by where it came from.
#[derive(Default)]
struct Surfaces(Vec<(String, String)>);

impl Surfaces {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into()));
    }

    fn answer(&mut self, what: &str, a: &Answer) {
        self.add(
            format!("HTTP {} body of {what}", a.status),
            format!("{:?}\n{}", a.headers, a.text()),
        );
    }
}

/// Runs the CLI; records stderr, and stdout unless `shows_new_secret`.
fn cli(
    s: &Serve,
    seen: &mut Surfaces,
    token: Option<&str>,
    args: &[&str],
    shows_new_secret: bool,
) -> std::process::Output {
    let out = s.run(token, args);
    seen.add(
        format!("stderr of serialmint {args:?}"),
        String::from_utf8_lossy(&out.stderr),
    );
    if !shows_new_secret {
        seen.add(
            format!("stdout of serialmint {args:?}"),
            String::from_utf8_lossy(&out.stdout),
        );
    }
    out
}

#[track_caller]
fn ok_json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn raw_admin(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    request(addr, method, path, &headers, b"").await
}

#[sqlx::test]
async fn a_whole_session_with_debug_logs_leaks_no_secret(pool: PgPool) {
    let hsm = SoftHsm::new();
    hsm.init_token(LABEL, PIN);
    let so_pin = format!("so-{PIN}");
    let trusted = trust_file(hsm.dir.path());
    let mut env = serve::env(&pool, &hsm, LABEL, PIN, Some(&trusted), "debug");
    // Enough bad tokens in this session not to be shut out (the throttle has its own tests).
    serve::set(&mut env, "SERIALMINT_ADMIN_AUTH_FAILURES_ALLOWED", "100");
    let db_password = serve::database_password(&serve::database_url(&pool));
    let mut seen = Surfaces::default();

    let mut s = Serve::start(env.clone());

    // Bootstrap: the admin token is shown once, by init.
    let out = cli(
        &s,
        &mut seen,
        None,
        &["init", "--brand-id", BRAND, "--json"],
        true,
    );
    let init = ok_json(&out);
    let admin_token = init["admin-token"].as_str().unwrap().to_string();
    let t = Some(admin_token.as_str());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&admin_token),
        "the search finds a secret where it is shown"
    );

    // A key generated on the token (the server logs in with the PIN), registered and pushed.
    let key = ok_json(&cli(
        &s,
        &mut seen,
        t,
        &["create", "key", "serial-key", "--json"],
        false,
    ));
    let key_id = key["sha3-384"].as_str().unwrap().to_string();
    let out = cli(&s, &mut seen, t, &["register-key", &key_id], false);
    assert!(out.status.success());
    let request_text = AccountKeyRequest::try_from(decode(&out.stdout).unwrap()).unwrap();
    let pushed = hsm.path("account-key.assertion");
    std::fs::write(
        &pushed,
        account_key_assertion(&TestKey::root(), BRAND, &request_text),
    )
    .unwrap();
    let out = cli(
        &s,
        &mut seen,
        t,
        &["push-account-keys", pushed.to_str().unwrap()],
        false,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A model with a generated API key (shown once), its policy, a read-only token.
    let model = ok_json(&cli(
        &s,
        &mut seen,
        t,
        &["create", "model", MODEL, "--generate-api-key", "--json"],
        true,
    ));
    let api_key = model["api-key"].as_str().unwrap().to_string();
    let out = cli(
        &s,
        &mut seen,
        t,
        &[
            "create",
            "serial-policy",
            "--model",
            MODEL,
            "--key",
            &key_id,
        ],
        false,
    );
    assert!(out.status.success());
    let ro = ok_json(&cli(
        &s,
        &mut seen,
        t,
        &[
            "create",
            "token",
            "auditor",
            "--role",
            "read-only",
            "--json",
        ],
        true,
    ));
    let ro_token = ro["token"].as_str().unwrap().to_string();

    // Serials, once the catalog has the model (it follows admin changes by NOTIFY).
    let dev = device_key("a", 4096);
    let serial_headers = |key: &str| {
        vec![
            ("api-key".to_string(), key.to_string()),
            (
                "content-type".to_string(),
                "application/x.ubuntu.assertion".to_string(),
            ),
        ]
    };
    let mut served = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while served < 3 {
        assert!(Instant::now() < deadline, "no serials:\n{}", s.logs());
        let rid = try_request(
            s.device,
            "POST",
            "/v1/request-id",
            &[("api-key", &api_key)],
            b"",
        )
        .await
        .unwrap();
        if rid.status != 200 {
            seen.answer("request-id before the catalog caught up", &rid);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let rid = rid.json()["request-id"].as_str().unwrap().to_owned();
        let h = serial_headers(&api_key);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let a = request(
            s.device,
            "POST",
            "/v1/serial",
            &h,
            &body(&ReqSpec::new(&rid), &dev),
        )
        .await;
        if a.status != 200 {
            seen.answer("serial before the catalog caught up", &a);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let first = decode_stream(&a.body).unwrap().into_iter().next().unwrap();
        assert_eq!(first.kind(), AssertionType::Serial);
        let serial = Serial::try_from(first).unwrap();
        assert_eq!(serial.device_key().key_id(), dev.public.key_id());
        served += 1;
    }

    // Device errors: wrong, missing and misplaced secrets, broken requests.
    for (what, key) in [
        ("a wrong API key", WRONG_API_KEY),
        ("the admin token as API key", admin_token.as_str()),
        ("the PIN as API key", PIN),
    ] {
        let a = request(s.device, "POST", "/v1/request-id", &[("api-key", key)], b"").await;
        a.assert_error(403, "api-key-invalid");
        seen.answer(&format!("request-id with {what}"), &a);
        let h = serial_headers(key);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let a = request(s.device, "POST", "/v1/serial", &h, b"x").await;
        a.assert_error(403, "api-key-invalid");
        seen.answer(&format!("serial with {what}"), &a);
    }
    let h = serial_headers(&api_key);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for (what, body) in [
        ("garbage", b"not an assertion".to_vec()),
        (
            "a bad request-id",
            device::body(&ReqSpec::new(&admin_token), &dev),
        ),
    ] {
        let a = request(s.device, "POST", "/v1/serial", &h, &body).await;
        assert_eq!(a.status, 400, "{}", a.text());
        seen.answer(&format!("serial with {what}"), &a);
    }

    // Admin errors: missing, wrong and misplaced tokens, a read-only token changing things.
    for (what, token) in [
        ("no token", None),
        ("a wrong token", Some(WRONG_ADMIN_TOKEN)),
        ("the API key as token", Some(api_key.as_str())),
        ("the PIN as token", Some(PIN)),
    ] {
        let a = raw_admin(s.admin, "GET", "/v1/models", token).await;
        a.assert_error(401, "unauthorized");
        seen.answer(&format!("admin request with {what}"), &a);
    }
    let a = raw_admin(s.admin, "POST", "/v1/tokens", Some(&ro_token)).await;
    a.assert_error(403, "forbidden");
    seen.answer("a read-only token creating a token", &a);
    let out = cli(
        &s,
        &mut seen,
        Some(WRONG_ADMIN_TOKEN),
        &["list", "keys"],
        false,
    );
    assert!(!out.status.success());

    // Reads that must not echo secrets.
    for args in [
        &["list", "keys"][..],
        &["list", "tokens"],
        &["list", "serial-policies"],
        &["list", "serials"],
        &["export", "signing-log", "--format", "json"],
        &["config"],
    ] {
        let out = cli(&s, &mut seen, t, args, false);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (_, readyz) = common::http_get(s.admin.port(), "/readyz");
    seen.add("/readyz", readyz);

    s.sigterm();
    let status = s.wait_exit(Duration::from_secs(60)).expect("serve exits");
    assert!(status.success(), "{status}");
    let first_run = s.logs();
    assert!(
        first_run.contains("DEBUG"),
        "debug logging is on:\n{first_run}"
    );
    seen.add("the server's output", first_run);

    // A wrong PIN: the server starts, says the HSM is unavailable, refuses what needs it.
    let mut bad_pin = env.clone();
    serve::set(&mut bad_pin, "SERIALMINT_TOKEN_PIN", WRONG_PIN);
    let mut s = Serve::start(bad_pin);
    let (status, readyz) = common::http_get(s.admin.port(), "/readyz");
    assert_eq!(status, 503, "{readyz}");
    seen.add("/readyz with a wrong PIN", readyz);
    let rid = request(
        s.device,
        "POST",
        "/v1/request-id",
        &[("api-key", &api_key)],
        b"",
    )
    .await;
    let rid = rid.json()["request-id"].as_str().unwrap().to_owned();
    let a = request(
        s.device,
        "POST",
        "/v1/serial",
        &h,
        &body(&ReqSpec::new(&rid), &dev),
    )
    .await;
    a.assert_error(503, "hsm-unavailable");
    seen.answer("serial with a wrong PIN", &a);
    let out = cli(&s, &mut seen, t, &["create", "key", "another"], false);
    assert!(!out.status.success());
    assert!(
        s.wait_for_log("HSM", 1, Duration::from_secs(30)).await,
        "the HSM failure is logged:\n{}",
        s.logs()
    );
    s.sigterm();
    assert!(s.wait_exit(Duration::from_secs(60)).is_some());
    seen.add("the server's output with a wrong PIN", s.logs());

    // A wrong database password, on the command line and for serve.
    let url = serve::database_url(&pool);
    if let Some(pw) = &db_password {
        let wrong = url.replacen(pw.as_str(), WRONG_DB_PASSWORD, 1);
        let mut wrong_env = env.clone();
        serve::set(&mut wrong_env, "SERIALMINT_DATABASE_URL", &wrong);
        for args in [&["migrate"][..], &["serve"]] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_serialmint"))
                .args(args)
                .env_clear()
                .envs(wrong_env.iter().cloned())
                .output()
                .unwrap();
            assert!(!out.status.success());
            seen.add(
                format!("serialmint {args:?} with a wrong database password"),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            );
        }
    } else {
        eprintln!("DATABASE_URL has no password; the database password is not searched for");
    }

    let mut secrets: Vec<(&str, String)> = vec![
        ("token PIN", PIN.into()),
        ("SO PIN", so_pin),
        ("wrong PIN", WRONG_PIN.into()),
        ("admin token", admin_token.clone()),
        ("read-only token", ro_token),
        ("wrong admin token", WRONG_ADMIN_TOKEN.into()),
        ("API key", api_key),
        ("wrong API key", WRONG_API_KEY.into()),
        ("wrong database password", WRONG_DB_PASSWORD.into()),
    ];
    if let Some(pw) = db_password {
        secrets.push(("database password", pw));
    }
    let mut leaks = Vec::new();
    for (what, text) in &seen.0 {
        for (name, secret) in &secrets {
            if text.contains(secret.as_str()) {
                leaks.push(format!("the {name} in {what}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets leaked:\n{}\n\nsurfaces:\n{}",
        leaks.join("\n"),
        seen.0
            .iter()
            .filter(|(w, _)| leaks.iter().any(|l| l.ends_with(w.as_str())))
            .map(|(w, t)| format!("--- {w}\n{t}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "searched {} surfaces for {} secrets",
        seen.0.len(),
        secrets.len()
    );
}
