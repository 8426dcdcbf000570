//! `import key` and `POST /v1/keys/import` end to end: key files made by GnuPG and OpenSSL in
//! the test are read by the real `serialmint` binary (`serve` on a fresh SoftHSM token and a
//! fresh Postgres database), land on the token as sensitive, non-extractable keys with the
//! SHA3-384 id snapd gives them, and every refusal leaves the token and the database as they
//! were. The snapd oracle signing with an imported key is in `tests/snapd_accepts.rs`.
//!
//! Needs `gpg` (Debian `gnupg`) and `openssl`, which `scripts/test` installs.

mod common;
#[path = "common/device.rs"]
mod device;
#[path = "common/keyfiles.rs"]
mod keyfiles;
#[path = "common/serve.rs"]
mod serve;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::io::Write;
use std::process::{Command, Stdio};

use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use serde_json::{Value, json};
use serialmint::keyfile::{self, KeyFormat};
use sqlx::PgPool;

use common::{TestKey, fixture_str};
use serve::Serve;
use softhsm::{SoftHsm, softhsm_module, with_user_session};

const PIN: &str = "4321-import-test";
const LABEL: &str = "import-test";

/// The `public-key-sha3-384` of snapd's own `testrootorg` account-key fixture.
fn testroot_id_from_snapd() -> String {
    let text = fixture_str("snapd/testrootorg.account-key");
    text.lines()
        .find_map(|l| l.strip_prefix("public-key-sha3-384: "))
        .unwrap()
        .to_string()
}

/// The code of a refusal, checking the message is one line without key material.
#[track_caller]
fn refused(text: &str) -> &'static str {
    let e = keyfile::parse(text.as_bytes()).unwrap_err();
    let m = e.to_string();
    assert_eq!(m.lines().count(), 1, "{m}");
    assert!(!m.contains("MII") && !m.contains("lQ"), "{m}");
    e.code()
}

#[test]
fn key_files_are_read_or_refused() {
    // OpenPGP, made by gpg: RSA-4096, no passphrase.
    let k = keyfile::parse(keyfiles::gpg_rsa4096().as_bytes()).unwrap();
    assert_eq!(k.format, KeyFormat::OpenPgp);
    assert_eq!(k.public.bits(), 4096);
    // OpenPGP's p < q, swapped for PKCS#11: prime1 > prime2.
    assert!(k.prime1.len() >= k.prime2.len());
    assert!(k.prime1[..] > k.prime2[..] || k.prime1.len() > k.prime2.len());

    // PKCS#8 and PKCS#1 of the same key: the same key, the same id.
    let p8 = keyfile::parse(keyfiles::pkcs8_rsa(4096).as_bytes()).unwrap();
    let p1 = keyfile::parse(keyfiles::pkcs1_rsa(4096).as_bytes()).unwrap();
    assert_eq!((p8.format, p1.format), (KeyFormat::Pkcs8, KeyFormat::Pkcs1));
    assert_eq!(p8.public, p1.public);
    assert_eq!(p8.coefficient[..], p1.coefficient[..]);
    assert_eq!(p8.exponent1[..], p1.exponent1[..]);
    assert!(!format!("{p8:?}").contains(&format!("{:?}", &p8.d[..4])));

    // The id is snapd's: the test root key's id as snapd's own account-key names it.
    let root = keyfile::parse(keyfiles::fixture_pem("testroot.pk8").as_bytes()).unwrap();
    assert_eq!(root.public.key_id(), testroot_id_from_snapd());
    assert_eq!(root.public.key_id(), TestKey::root().public.key_id());

    // Refusals, each with its own code and a hint where one helps.
    let protected = keyfiles::gpg_secret_key(
        "gpg-protected",
        "Key-Type: RSA\nKey-Length: 4096\nKey-Usage: sign",
        Some("secret"),
    );
    assert_eq!(refused(&protected), "key-encrypted");
    let m = keyfile::parse(protected.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(m.contains("gpg --edit-key KEYID passwd"), "{m}");
    assert_eq!(refused(&keyfiles::pkcs8_encrypted()), "key-encrypted");
    assert_eq!(refused(&keyfiles::pkcs1_encrypted()), "key-encrypted");
    assert_eq!(refused(&keyfiles::pkcs8_rsa(2048)), "key-too-small");
    assert_eq!(refused(&keyfiles::pkcs1_rsa(2048)), "key-too-small");
    let gpg2048 = keyfiles::gpg_secret_key(
        "gpg-rsa2048",
        "Key-Type: RSA\nKey-Length: 2048\nKey-Usage: sign",
        None,
    );
    assert_eq!(refused(&gpg2048), "key-too-small");
    assert_eq!(refused(&keyfiles::pkcs8_ed25519()), "key-not-rsa");
    let eddsa = keyfiles::gpg_secret_key(
        "gpg-ed25519",
        "Key-Type: EDDSA\nKey-Curve: ed25519\nKey-Usage: sign",
        None,
    );
    assert_eq!(refused(&eddsa), "key-not-rsa");
    assert_eq!(refused("not a key"), "key-unreadable");
    let armored = keyfiles::gpg_rsa4096();
    let truncated = format!(
        "{}\n-----END PGP PRIVATE KEY BLOCK-----\n",
        &armored[..armored.len() / 2]
    );
    assert_eq!(refused(&truncated), "key-unreadable");
    // One secret byte changed inside the armor (the CRC or the checksum notices).
    let mut damaged = armored.clone().into_bytes();
    let at = damaged.len() / 2;
    damaged[at] = if damaged[at] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        refused(std::str::from_utf8(&damaged).unwrap()),
        "key-unreadable"
    );
}

// --- end to end: serve, the CLI, the admin API and the token ---------------------------

struct Vault {
    _hsm: SoftHsm,
    serve: Serve,
    token: String,
}

fn start(pool: &PgPool) -> Vault {
    let hsm = SoftHsm::new();
    hsm.init_token(LABEL, PIN);
    let mut env = serve::env(pool, &hsm, LABEL, PIN, None, "warn");
    serve::set(&mut env, "SERIALMINT_HSM_SESSIONS", "1");
    let serve = Serve::start(env);
    let init = serve.json(None, &["init", "--brand-id", "testrootorg", "--json"]);
    let token = init["admin-token"].as_str().unwrap().to_string();
    Vault {
        _hsm: hsm,
        serve,
        token,
    }
}

impl Vault {
    fn cli(&self, args: &[&str]) -> std::process::Output {
        self.serve.run(Some(&self.token), args)
    }

    /// `import key NAME -` with `text` on stdin.
    fn import_stdin(&self, name: &str, text: &str) -> std::process::Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_serialmint"))
            .args(["import", "key", name, "-", "--json"])
            .env_clear()
            .envs(self.serve.env.iter().cloned())
            .env("SERIALMINT_ADMIN_URL", &self.serve.admin_url)
            .env("SERIALMINT_ADMIN_TOKEN", &self.token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// `POST /v1/keys/import` with `body`.
    async fn api_import(&self, body: &Value) -> device::Answer {
        let auth = format!("Bearer {}", self.token);
        device::request(
            self.serve.admin,
            "POST",
            "/v1/keys/import",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
        .await
    }

    fn keys(&self) -> Vec<Value> {
        let out = self
            .serve
            .json(Some(&self.token), &["list", "keys", "--json"]);
        out.as_array().unwrap().clone()
    }

    /// Every object on the token: (class, CKA_ID), sorted.
    fn objects(&self) -> Vec<(u64, Vec<u8>)> {
        let mut all: Vec<(u64, Vec<u8>)> = with_user_session(&softhsm_module(), LABEL, PIN, |s| {
            s.find_objects(&[])
                .unwrap()
                .into_iter()
                .map(|h| {
                    let attrs = s
                        .get_attributes(h, &[AttributeType::Class, AttributeType::Id])
                        .unwrap();
                    let (mut class, mut id) = (ObjectClass::DATA, Vec::new());
                    for a in attrs {
                        match a {
                            Attribute::Class(c) => class = c,
                            Attribute::Id(v) => id = v,
                            _ => {}
                        }
                    }
                    (u64::from(class), id)
                })
                .collect()
        });
        all.sort();
        all
    }

    /// The private key with this id: (sensitive, extractable, sign, label).
    fn private_key_flags(&self, key_id: &str) -> (bool, bool, bool, String) {
        let id = serialmint::hsm::decode_key_id(key_id).unwrap().to_vec();
        with_user_session(&softhsm_module(), LABEL, PIN, |s| {
            let found = s
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Id(id.clone()),
                ])
                .unwrap();
            assert_eq!(found.len(), 1, "one private key with id {key_id}");
            let attrs = s
                .get_attributes(
                    found[0],
                    &[
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::Sign,
                        AttributeType::Label,
                    ],
                )
                .unwrap();
            let mut out = (false, true, false, String::new());
            for a in attrs {
                match a {
                    Attribute::Sensitive(v) => out.0 = v,
                    Attribute::Extractable(v) => out.1 = v,
                    Attribute::Sign(v) => out.2 = v,
                    Attribute::Label(v) => out.3 = String::from_utf8(v).unwrap(),
                    _ => {}
                }
            }
            // The secret parts cannot be read back.
            let secret = s.get_attributes(found[0], &[AttributeType::PrivateExponent]);
            assert!(
                !matches!(secret.as_deref(), Ok([Attribute::PrivateExponent(v)]) if !v.is_empty()),
                "the private exponent of an imported key was readable"
            );
            out
        })
    }
}

#[sqlx::test]
async fn imports_openpgp_pkcs8_and_pkcs1_keys_onto_the_token(pool: PgPool) {
    let v = start(&pool);
    let dir = tempfile::tempdir().unwrap();

    // OpenPGP from a file, through the CLI.
    let armored = keyfiles::gpg_rsa4096();
    let gpg_id = keyfile::parse(armored.as_bytes()).unwrap().public.key_id();
    let file = dir.path().join("gpg.asc");
    std::fs::write(&file, &armored).unwrap();
    let out = v.serve.json(
        Some(&v.token),
        &["import", "key", "gpg-key", file.to_str().unwrap(), "--json"],
    );
    assert_eq!(
        out,
        json!({"name": "gpg-key", "sha3-384": gpg_id, "origin": "imported"})
    );

    // PKCS#8 PEM on stdin, through the CLI.
    let pk8 = keyfiles::pkcs8_rsa(4096);
    let pk8_id = keyfile::parse(pk8.as_bytes()).unwrap().public.key_id();
    let out = v.import_stdin("pem-key", &pk8);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["sha3-384"], pk8_id.as_str());

    // PKCS#1 PEM through the admin API: snapd's test root key, whose id snapd names.
    let pk1 = {
        let src = dir.path().join("root.pk8.pem");
        std::fs::write(&src, keyfiles::fixture_pem("testroot.pk8")).unwrap();
        let out = Command::new("openssl")
            .args(["rsa", "-traditional", "-in"])
            .arg(&src)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(pk1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let a = v
        .api_import(&json!({"name": "root-key", "private-key": pk1}))
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.header("location"), Some("/v1/keys/root-key"));
    let view = a.json();
    assert_eq!(view["sha3-384"], testroot_id_from_snapd().as_str());
    assert_eq!(view["origin"], "imported");
    assert_eq!(view["status"], "ready");
    assert_eq!(
        view["public-key"].as_str().unwrap(),
        TestKey::root().public.encode()
    );

    // A generated key next to them, for the origin column.
    let made = v
        .serve
        .json(Some(&v.token), &["create", "key", "made-key", "--json"]);
    let keys = v.keys();
    let origin = |name: &str| {
        keys.iter()
            .find(|k| k["name"] == name)
            .map(|k| (k["origin"].clone(), k["status"].clone()))
            .unwrap()
    };
    assert_eq!(origin("gpg-key"), (json!("imported"), json!("ready")));
    assert_eq!(origin("pem-key"), (json!("imported"), json!("ready")));
    assert_eq!(origin("root-key"), (json!("imported"), json!("ready")));
    assert_eq!(origin("made-key"), (json!("generated"), json!("ready")));
    let table = v.serve.ok(Some(&v.token), &["list", "keys"]);
    assert!(table.contains("Origin"), "{table}");
    let row = table.lines().find(|l| l.contains("gpg-key")).unwrap();
    assert!(row.contains("imported") && row.contains(&gpg_id), "{table}");
    let row = table.lines().find(|l| l.contains("made-key")).unwrap();
    assert!(row.contains("generated"), "{table}");

    // On the token: sensitive, never extractable, signing, labelled with the name.
    for (name, id) in [
        ("gpg-key", gpg_id.as_str()),
        ("pem-key", pk8_id.as_str()),
        ("root-key", view["sha3-384"].as_str().unwrap()),
    ] {
        assert_eq!(
            v.private_key_flags(id),
            (true, false, true, name.to_string()),
            "{name}"
        );
    }
    let objects = v.objects();
    assert_eq!(
        objects.len(),
        8,
        "4 keys, each a private and a public object"
    );
    let made_id = made["sha3-384"].as_str().unwrap();
    assert_ne!(made_id, gpg_id);

    // Each imported key signs an account-key-request the codec verifies (register-key).
    let text = v.serve.ok(Some(&v.token), &["register-key", "gpg-key"]);
    let request = serialmint::assertion::AccountKeyRequest::try_from(
        serialmint::assertion::decode(text.as_bytes()).unwrap(),
    )
    .unwrap();
    request.verify_self_signature().unwrap();
    assert_eq!(request.public_key_id(), gpg_id);
}

#[sqlx::test]
async fn refusals_leave_nothing_behind(pool: PgPool) {
    let v = start(&pool);
    let pk8 = keyfiles::pkcs8_rsa(4096);
    let a = v
        .api_import(&json!({"name": "first", "private-key": pk8}))
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let before = v.objects();
    assert_eq!(before.len(), 2);

    let protected = keyfiles::gpg_secret_key(
        "gpg-protected",
        "Key-Type: RSA\nKey-Length: 4096\nKey-Usage: sign",
        Some("secret"),
    );
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "encrypted OpenPGP",
            json!({"name": "second", "private-key": protected}),
            400,
            "key-encrypted",
        ),
        (
            "encrypted PKCS#8",
            json!({"name": "second", "private-key": keyfiles::pkcs8_encrypted()}),
            400,
            "key-encrypted",
        ),
        (
            "RSA-2048",
            json!({"name": "second", "private-key": keyfiles::pkcs1_rsa(2048)}),
            400,
            "key-too-small",
        ),
        (
            "Ed25519",
            json!({"name": "second", "private-key": keyfiles::pkcs8_ed25519()}),
            400,
            "key-not-rsa",
        ),
        (
            "garbage",
            json!({"name": "second", "private-key": "garbage"}),
            400,
            "key-unreadable",
        ),
        (
            "the same key again, as PKCS#1",
            json!({"name": "second", "private-key": keyfiles::pkcs1_rsa(4096)}),
            409,
            "key-already-held",
        ),
        (
            "another key under a taken name",
            json!({"name": "first", "private-key": keyfiles::gpg_rsa4096()}),
            409,
            "key-name-taken",
        ),
        (
            "an unknown field",
            json!({"name": "second", "private-key": "x", "passphrase": "y"}),
            400,
            "invalid",
        ),
        (
            "an invalid name",
            json!({"name": "Not A Name", "private-key": keyfiles::gpg_rsa4096()}),
            400,
            "invalid",
        ),
    ];
    for (what, body, status, code) in cases {
        let a = v.api_import(&body).await;
        a.assert_error(status, code);
        let m = a.json()["message"].as_str().unwrap().to_string();
        assert!(!m.contains("MII") && !m.contains("lQ"), "{what}: {m}");
        assert_eq!(v.objects(), before, "{what} changed the token");
        assert_eq!(v.keys().len(), 1, "{what} changed the database");
    }

    // The CLI says each in one line.
    let dir = tempfile::tempdir().unwrap();
    for (text, words) in [
        (protected.as_str(), "gpg --edit-key KEYID passwd"),
        (
            &keyfiles::pkcs1_encrypted(),
            "openssl rsa -in enc.pem -out plain.pem",
        ),
        (&keyfiles::pkcs8_rsa(2048), "at least 4096"),
        (&keyfiles::pkcs8_ed25519(), "not an RSA key"),
        ("hello", "not a readable private key"),
        (&keyfiles::pkcs1_rsa(4096), "already held"),
    ] {
        let file = dir.path().join("key");
        std::fs::write(&file, text).unwrap();
        let out = v.cli(&["import", "key", "second", file.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.starts_with("serialmint: ") && err.contains(words),
            "{err}"
        );
    }
    let out = v.cli(&["import", "key", "second", "/nonexistent/key.pem"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/key.pem"));
    assert_eq!(v.objects(), before);
    assert_eq!(v.keys().len(), 1);
}

#[sqlx::test]
async fn an_import_the_database_cannot_record_leaves_the_token(pool: PgPool) {
    let v = start(&pool);
    // The database refuses to mark an imported key ready (as if it failed at that moment).
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_import() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'refused by the test'; END; $$; \
         CREATE TRIGGER refuse_import BEFORE UPDATE ON signing_keys FOR EACH ROW \
         WHEN (NEW.origin = 'imported' AND NEW.status = 'ready') \
         EXECUTE FUNCTION refuse_import();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let armored = keyfiles::gpg_rsa4096();
    let a = v
        .api_import(&json!({"name": "doomed", "private-key": armored}))
        .await;
    a.assert_error(500, "database-error");
    assert!(v.objects().is_empty(), "the key stayed on the token");
    assert!(
        v.keys().is_empty(),
        "the reservation stayed in the database"
    );

    // Once the database records again, the same key and name import.
    sqlx::raw_sql("DROP TRIGGER refuse_import ON signing_keys")
        .execute(&pool)
        .await
        .unwrap();
    let a = v
        .api_import(&json!({"name": "doomed", "private-key": armored}))
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(v.objects().len(), 2);
}
