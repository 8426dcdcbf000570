//! Secrets from files against the real `serialmint serve` binary: the token PIN and the
//! database URL come from 0600 files (as systemd's `LoadCredential=` makes them), neither is in
//! the environment, and the server logs in to the real SoftHSM token and reaches the real
//! Postgres with them (`/readyz` says 200 only when both answer). A group-readable PIN file is
//! refused at start with the file and the fix named; a PIN given both ways is refused naming
//! both settings. Every output is searched for the PIN and the database password.
//!
//! Run with `cargo nextest run` (one process per test: SoftHSM is process-wide).

mod common;
#[path = "common/serve.rs"]
mod serve;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use serve::Serve;
use softhsm::SoftHsm;

const LABEL: &str = "secret-files";
const PIN: &str = "Pin-in-a-file-2Vx9Lq";

fn write_secret(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// The serve environment with the PIN and the database URL as files instead.
fn env_with_files(
    pool: &PgPool,
    hsm: &SoftHsm,
    pin_file: &Path,
    url_file: &Path,
) -> Vec<(String, String)> {
    let mut env = serve::env(pool, hsm, LABEL, PIN, None, "debug");
    env.retain(|(k, _)| k != "SERIALMINT_TOKEN_PIN" && k != "SERIALMINT_DATABASE_URL");
    serve::set(
        &mut env,
        "SERIALMINT_TOKEN_PIN_FILE",
        pin_file.to_str().unwrap(),
    );
    serve::set(
        &mut env,
        "SERIALMINT_DATABASE_URL_FILE",
        url_file.to_str().unwrap(),
    );
    env
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "a secret in {what}:\n{text}");
    }
}

#[sqlx::test]
async fn serve_reads_the_pin_and_database_url_from_private_files(pool: PgPool) {
    let hsm = SoftHsm::new();
    hsm.init_token(LABEL, PIN);
    let url = serve::database_url(&pool);
    let password = serve::database_password(&url);
    let mut secrets = vec![PIN];
    if let Some(pw) = &password {
        secrets.push(pw.as_str());
    }
    let pin_file = write_secret(hsm.dir.path(), "pin", &format!("{PIN}\n"), 0o600);
    let url_file = write_secret(hsm.dir.path(), "database-url", &format!("{url}\n"), 0o400);
    let env = env_with_files(&pool, &hsm, &pin_file, &url_file);
    assert!(
        env.iter().all(|(_, v)| !v.contains(PIN)),
        "the PIN is in no variable"
    );

    let mut s = Serve::start(env.clone());
    // Ready: Postgres answered with the URL from its file, the token logged in with the PIN
    // from its file (a wrong PIN keeps /readyz at 503: tests/secrets.rs).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = common::http_get(s.admin.port(), "/readyz");
        if status == 200 {
            assert_no_secret("/readyz", &body, &secrets);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never ready: {body}\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // `serialmint config` names the files and redacts what they hold.
    let out = s.run(None, &["config"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let shown = output_text(&out);
    assert!(shown.contains(pin_file.to_str().unwrap()), "{shown}");
    assert!(shown.contains("token_pin: \"[redacted]\""), "{shown}");
    assert!(shown.contains("database_url: \"[redacted]\""), "{shown}");
    assert_no_secret("serialmint config", &shown, &secrets);

    s.sigterm();
    assert!(
        s.wait_exit(Duration::from_secs(60))
            .is_some_and(|st| st.success())
    );
    let logs = s.logs();
    assert!(logs.contains("DEBUG"), "debug logging is on:\n{logs}");
    assert_no_secret("the server's output", &logs, &secrets);

    // A PIN file group or others may read: serve refuses to start, naming the file and the fix.
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_serialmint"))
        .arg("serve")
        .env_clear()
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(
        text.contains(&format!("chmod 600 {}", pin_file.display()))
            && text.contains("hsm.pin_file"),
        "{text}"
    );
    assert_no_secret("serve with an open PIN file", &text, &secrets);

    // The PIN both as a file and directly: refused, naming both.
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut both = env.clone();
    serve::set(&mut both, "SERIALMINT_TOKEN_PIN", PIN);
    let out = Command::new(env!("CARGO_BIN_EXE_serialmint"))
        .arg("serve")
        .env_clear()
        .envs(both.iter().cloned())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(
        text.contains("(SERIALMINT_TOKEN_PIN)") && text.contains("(SERIALMINT_TOKEN_PIN_FILE)"),
        "{text}"
    );
    assert_no_secret("serve with the PIN twice", &text, &secrets);
}
