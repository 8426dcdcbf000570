//! snapd 2.57's own Go code as the oracle: runs a program of `tests/snapd/` with `go run` in
//! GOPATH mode over Debian's snapd source (`/usr/share/gocode`), as `tests/snapd_accepts.rs`
//! does, and reads its verdict ("snapd accepted ..." / "snapd rejected: ...").
//!
//! Needs Go and snapd's Go source (golang-go, golang-github-snapcore-snapd-dev and its
//! dependencies), which `scripts/test` installs; the system-user oracle also needs cgo with
//! libcrypt (gcc, libcrypt-dev). Without them the tests fail, not skip.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// Where Debian's golang-*-dev packages put Go source (GOPATH layout).
pub const GOCODE: &str = "/usr/share/gocode";

/// What snapd said: whether it accepted, and its output.
#[derive(Debug)]
pub struct Verdict {
    pub accepted: bool,
    pub out: String,
}

/// `go run tests/snapd/<program> args` in `dir` (its GOPATH goes there, the build cache is
/// shared by every test), with cgo for programs that call C (libcrypt); its output whatever
/// the exit status. Fails (never skips) when Go or snapd's source is missing.
pub fn go_run(dir: &Path, program: &str, args: &[&OsStr], cgo: bool) -> Output {
    let hint = "run scripts/test, which installs golang-go golang-github-snapcore-snapd-dev \
                golang-golang-x-crypto-dev golang-gopkg-tomb.v2-dev golang-gopkg-yaml.v2-dev";
    assert!(
        Path::new(GOCODE)
            .join("src/github.com/snapcore/snapd/asserts")
            .is_dir(),
        "snapd's Go source is missing; {hint}"
    );
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapd")
        .join(program);
    let gopath = dir.join("gopath");
    std::fs::create_dir_all(&gopath).unwrap();
    let gocache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-build-cache");
    Command::new("go")
        .arg("run")
        .arg(&source)
        .args(args)
        .current_dir(dir)
        .env("GO111MODULE", "off")
        .env("GOPATH", format!("{}:{GOCODE}", gopath.display()))
        .env("GOCACHE", &gocache)
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", if cgo { "1" } else { "0" })
        .output()
        .unwrap_or_else(|e| panic!("`go run` does not start ({e}); {hint}"))
}

/// Runs `tests/snapd/<program>` with `args` in `dir` ([`go_run`]) and reads its verdict.
pub fn run(dir: &Path, program: &str, args: &[&OsStr], cgo: bool) -> Verdict {
    let out = go_run(dir, program, args, cgo);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => Verdict {
            accepted: true,
            out: stdout,
        },
        // `go run` exits 1 for the program's exit 1; the program says "snapd rejected: ".
        Some(1) if stdout.starts_with("snapd rejected: ") => Verdict {
            accepted: false,
            out: stdout,
        },
        _ => panic!(
            "the oracle did not run ({}):\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        ),
    }
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}
