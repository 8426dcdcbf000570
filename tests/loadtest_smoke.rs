//! Smoke test of `serialmint-loadtest` against a real device plane: the in-process server of
//! the device tests (real SoftHSM token holding the testrootorg brand key, real Postgres
//! database from `#[sqlx::test]`), driven by the load generator's binary as a child process,
//! bounded to 20 devices. The serials must all verify through the full chain (`--trusted`),
//! and the raw HSM phase must run on the same token. A wrong API key must make the run fail.
//!
//! The binary is `target/<profile>/serialmint-loadtest`, built in the same `cargo test` /
//! `cargo nextest run --workspace` invocation (the loadtest package's own integration test
//! makes cargo build it).

mod common;
#[path = "common/device.rs"]
mod device;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::path::PathBuf;

use device::{API_KEY, MODEL, PIN, TOKEN, setup};
use sqlx::PgPool;

fn loadtest_bin() -> PathBuf {
    // target/<profile>/deps/loadtest_smoke-HASH -> target/<profile>/serialmint-loadtest
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("serialmint-loadtest");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p serialmint-loadtest` or test the whole workspace",
        bin.display()
    );
    bin
}

async fn run_loadtest(
    server: &device::Server,
    dir: &std::path::Path,
    api_key: &str,
) -> std::process::Output {
    let model = dir.join("model");
    std::fs::write(&model, device::model_assertion(MODEL)).unwrap();
    let trusted = device::trust_file(dir);
    let keys = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("loadtest-smoke-keys");
    tokio::process::Command::new(loadtest_bin())
        .args(["run", "--json", "--no-progress", "--raw"])
        .args(["--raw-seconds", "1", "--singles", "5", "--sessions", "2"])
        .arg("--url")
        .arg(format!("http://{}/v1/", server.addr))
        .args(["--api-key", api_key])
        .arg("--model")
        .arg(&model)
        .arg("--trusted")
        .arg(&trusted)
        .arg("--key-cache")
        .arg(&keys)
        .args(["--keys", "4", "--devices", "20", "--concurrency", "4"])
        // The raw phase opens the same token with the server's settings.
        .env("SERIALMINT_PKCS11_MODULE", softhsm::softhsm_module())
        .env("SERIALMINT_TOKEN_LABEL", TOKEN)
        .env("SERIALMINT_TOKEN_PIN", PIN)
        .env_remove("SERIALMINT_CONFIG")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

#[sqlx::test]
async fn twenty_devices_get_serials_that_verify_through_the_chain(pool: PgPool) {
    let (_token, server) = setup(pool).await;
    let dir = tempfile::tempdir().unwrap();
    let out = run_loadtest(&server, dir.path(), API_KEY).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadtest failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mode"], "closed");
    assert_eq!(report["serial"]["requests"], 20, "{report:#}");
    assert_eq!(report["serial"]["good"], 20, "{report:#}");
    assert_eq!(report["serial"]["statuses"]["200"], 20, "{report:#}");
    let v = &report["verification"];
    assert_eq!(v["chain_checked"], true);
    assert_eq!(v["verified"], 20, "{report:#}");
    assert_eq!(v["failed"], 0, "{report:#}");
    assert_eq!(report["raw"]["errors"], 0, "{report:#}");
    assert!(report["raw"]["signs_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["ratio_to_raw"].as_f64().is_some(), "{report:#}");
    // The signing log holds exactly the 20 serials.
    assert_eq!(server.store.issued_total().await.unwrap(), 20);
}

#[sqlx::test]
async fn a_wrong_api_key_fails_the_run(pool: PgPool) {
    let (_token, server) = setup(pool).await;
    let dir = tempfile::tempdir().unwrap();
    let out = run_loadtest(&server, dir.path(), "not-the-api-key-0000").await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("request-id"), "{stderr}");
}
