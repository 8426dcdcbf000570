//! Key files for the import tests, made by the real tools: GnuPG (batch key generation in a
//! throw-away GNUPGHOME, exported with `gpg --export-secret-keys --armor`) and OpenSSL
//! (`genrsa`, `rsa -traditional`, `pkcs8 -topk8`, `genpkey`). Made once per kind and cached
//! under the target's temp dir (nextest runs every test in its own process; RSA-4096
//! generation takes seconds).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn cache_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("import-keys");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `cmd`, panicking with its stderr when it fails.
#[track_caller]
fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The cached file `name`, made by `make(tmp_path)` when absent (written aside and linked into
/// place, so a concurrent test process sees the whole file or none, and the first one wins).
fn cached(name: &str, make: impl FnOnce(&Path)) -> String {
    let path = cache_dir().join(name);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return text;
    }
    let tmp = cache_dir().join(format!("{name}.{}.tmp", std::process::id()));
    make(&tmp);
    // Publish without clobbering (tests run in parallel processes): a process that lost the
    // race uses the winner's key, so every process sees one key per name.
    let _ = std::fs::hard_link(&tmp, &path);
    std::fs::remove_file(&tmp).unwrap();
    std::fs::read_to_string(&path).unwrap()
}

/// A GnuPG key made in batch mode: `params` are the key's lines of the parameter file
/// (`Key-Type: RSA` ...); with `passphrase` it is protected. Returns the armored secret key
/// as `gpg --export-secret-keys --armor` writes it.
pub fn gpg_secret_key(name: &str, params: &str, passphrase: Option<&str>) -> String {
    cached(&format!("{name}.asc"), |out| {
        let home = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
        let gpg = || {
            let mut c = Command::new("gpg");
            c.env("GNUPGHOME", home.path()).args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
            ]);
            if let Some(p) = passphrase {
                c.args(["--passphrase", p]);
            }
            c
        };
        let protection = match passphrase {
            None => "%no-protection".to_string(),
            Some(p) => format!("Passphrase: {p}"),
        };
        let spec = home.path().join("params");
        std::fs::write(
            &spec,
            format!(
                "{params}\n{protection}\nName-Real: serialmint test\n\
                 Name-Email: {name}@example.com\nExpire-Date: 0\n%commit\n"
            ),
        )
        .unwrap();
        run(gpg().arg("--gen-key").arg(&spec));
        let armored = run(gpg().args([
            "--armor",
            "--export-secret-keys",
            &format!("{name}@example.com"),
        ]));
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", home.path())
            .args(["--kill", "gpg-agent"])
            .status();
        std::fs::write(out, armored).unwrap();
    })
}

/// A passwordless RSA-4096 OpenPGP key (as `snap create-key` users have them).
pub fn gpg_rsa4096() -> String {
    gpg_secret_key(
        "gpg-rsa4096",
        "Key-Type: RSA\nKey-Length: 4096\nKey-Usage: sign",
        None,
    )
}

/// An RSA-4096 PKCS#8 PEM key (`openssl genrsa 4096`, which writes PKCS#8 since OpenSSL 3).
pub fn pkcs8_rsa(bits: u32) -> String {
    cached(&format!("rsa{bits}.pk8.pem"), |out| {
        run(Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(out)
            .arg(bits.to_string()));
    })
}

/// The same key as [`pkcs8_rsa`] as PKCS#1 PEM (`openssl rsa -traditional`).
pub fn pkcs1_rsa(bits: u32) -> String {
    let pk8 = pkcs8_rsa(bits);
    cached(&format!("rsa{bits}.pk1.pem"), |out| {
        let src = out.with_extension("src");
        std::fs::write(&src, pk8).unwrap();
        run(Command::new("openssl")
            .args(["rsa", "-traditional", "-in"])
            .arg(&src)
            .arg("-out")
            .arg(out));
        std::fs::remove_file(src).unwrap();
    })
}

/// `openssl` with `args`, the PKCS#8 RSA-4096 key as `-in`, writing `name`.
fn from_pkcs8(name: &str, args: &[&str]) -> String {
    let pk8 = pkcs8_rsa(4096);
    cached(name, |out| {
        let src = out.with_extension("src");
        std::fs::write(&src, pk8).unwrap();
        run(Command::new("openssl")
            .args(args)
            .arg("-in")
            .arg(&src)
            .arg("-out")
            .arg(out));
        std::fs::remove_file(src).unwrap();
    })
}

/// The RSA-4096 key as encrypted PKCS#8 (`openssl pkcs8 -topk8`, passphrase `secret`).
pub fn pkcs8_encrypted() -> String {
    from_pkcs8(
        "rsa4096.enc.pk8.pem",
        &["pkcs8", "-topk8", "-passout", "pass:secret"],
    )
}

/// The RSA-4096 key as encrypted PKCS#1 (`openssl rsa -traditional -aes128`).
pub fn pkcs1_encrypted() -> String {
    from_pkcs8(
        "rsa4096.enc.pk1.pem",
        &["rsa", "-traditional", "-aes128", "-passout", "pass:secret"],
    )
}

/// An Ed25519 PKCS#8 PEM key (`openssl genpkey`).
pub fn pkcs8_ed25519() -> String {
    cached("ed25519.pk8.pem", |out| {
        run(Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(out));
    })
}

/// A snapd fixture key (PKCS#8 DER under tests/fixtures) as PKCS#8 PEM.
pub fn fixture_pem(name: &str) -> String {
    use base64::Engine;
    let der = crate::common::fixture(name);
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(chunk).unwrap());
        text.push('\n');
    }
    text.push_str("-----END PRIVATE KEY-----\n");
    text
}
