//! The load generator's command line, as a process: subcommands are listed, and bad input is
//! one clear line and a non-zero exit, before anything touches a server or a token.
//! (Also makes cargo build the binary, which the workspace smoke test runs.)

use std::process::Command;

fn loadtest(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_serialmint-loadtest"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_lists_every_subcommand() {
    let out = loadtest(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["run", "raw", "keys", "request-id", "conns"] {
        assert!(text.contains(sub), "{sub} missing from:\n{text}");
    }
}

#[test]
fn a_missing_model_file_is_one_line_and_fails() {
    let out = loadtest(&["run", "--model", "/nonexistent/model", "--no-progress"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/model"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn a_zero_rate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::write(
        &model,
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/snapd/developer1-pc.model"
        ))
        .unwrap(),
    )
    .unwrap();
    let out = loadtest(&[
        "run",
        "--no-progress",
        "--model",
        model.to_str().unwrap(),
        "--rate",
        "0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rate"), "{err}");
}
