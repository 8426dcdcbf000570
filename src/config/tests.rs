//! The configuration's own tests: layering, unknown keys, refused values, secrets.

use super::*;
use std::io::Write;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn defaults_apply_without_file_or_env() {
    let c = Config::load_from(None, &[], &[]).unwrap();
    assert_eq!(c.device_listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:8081");
    assert_eq!(c.token_label, "serialmint");
    assert_eq!(c.pkcs11_module, PathBuf::from(DEFAULT_PKCS11_MODULE));
}

#[test]
fn file_then_env_then_flags() {
    let f = file(
        "[device]\nlisten = \"127.0.0.1:9000\"\n[hsm]\ntoken_label = \"from-file\"\nsessions = 3\n",
    );
    let e = env(&[
        ("SERIALMINT_TOKEN_LABEL", "from-env"),
        ("SERIALMINT_HSM_SESSIONS", "4"),
    ]);
    let flags = vec![("hsm.sessions".to_string(), "5".to_string())];
    let c = Config::load_from(Some(f.path()), &e, &flags).unwrap();
    assert_eq!(c.device_listen.to_string(), "127.0.0.1:9000");
    assert_eq!(c.token_label, "from-env");
    assert_eq!(c.hsm_sessions, 5);
}

#[test]
fn unknown_file_keys_are_refused() {
    let f = file("[hsm]\ntoken_lable = \"x\"\n");
    let err = Config::load_from(Some(f.path()), &[], &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown setting `hsm.token_lable`"), "{err}");
    let f = file("[nope]\nx = 1\n");
    assert!(Config::load_from(Some(f.path()), &[], &[]).is_err());
}

#[test]
fn bad_values_name_the_setting_and_never_the_secret() {
    let e = env(&[("SERIALMINT_DEVICE_LISTEN", "nowhere")]);
    let err = Config::load_from(None, &e, &[]).unwrap_err().to_string();
    assert!(
        err.contains("SERIALMINT_DEVICE_LISTEN") && err.contains("nowhere"),
        "{err}"
    );
    let e = env(&[("SERIALMINT_HSM_SESSIONS", "0")]);
    assert!(Config::load_from(None, &e, &[]).is_err());
}

#[test]
fn more_tokens_each_sign_with_their_own_pin_and_module() {
    let c = Config::load_from(None, &[], &[]).unwrap();
    assert!(c.more_tokens.is_empty());
    assert_eq!(c.token_count(), 1);

    let f = file(
        "[hsm]\npin = \"main-pin\"\nsessions = 2\n\
         more_tokens = \"usb-2, remote@/opt/p11-kit-client.so\"\n",
    );
    let c = Config::load_from(Some(f.path()), &[], &[]).unwrap();
    assert_eq!(
        c.more_tokens,
        [
            MoreToken {
                label: "usb-2".into(),
                module: None
            },
            MoreToken {
                label: "remote".into(),
                module: Some(PathBuf::from("/opt/p11-kit-client.so"))
            },
        ]
    );
    // No hsm.more_pins: every token uses hsm.pin.
    assert_eq!(c.more_token_pin(1).expose_secret(), "main-pin");
    let e = env(&[("SERIALMINT_HSM_MORE_PINS", "pin-2, pin-3")]);
    let c = Config::load_from(Some(f.path()), &e, &[]).unwrap();
    let hsm = crate::hsm::HsmConfig::from(&c);
    let got: Vec<_> = hsm
        .tokens
        .iter()
        .map(|t| (t.label.as_str(), t.pin.expose_secret(), t.module.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("serialmint", "main-pin", None),
            ("usb-2", "pin-2", None),
            (
                "remote",
                "pin-3",
                Some(PathBuf::from("/opt/p11-kit-client.so"))
            ),
        ]
    );
    // One signing worker per session on every token.
    assert_eq!(crate::signer::SignerConfig::from_config(&c).workers, 6);
    assert!(!format!("{c:?}").contains("pin-2"), "PINs stay redacted");

    // Two PINs for two tokens, or one for all; anything else is refused at start-up,
    // without the PINs in the message.
    let e = env(&[("SERIALMINT_HSM_MORE_PINS", "only-one")]);
    let c = Config::load_from(Some(f.path()), &e, &[]).unwrap();
    assert_eq!(c.more_token_pin(0).expose_secret(), "only-one");
    assert_eq!(c.more_token_pin(1).expose_secret(), "only-one");
    let e = env(&[
        ("SERIALMINT_HSM_MORE_PINS", "a-pin,b-pin,c-pin"),
        ("SERIALMINT_DATABASE_URL", "postgres://x"),
        ("SERIALMINT_PKCS11_MODULE", "/bin/sh"),
    ]);
    let c = Config::load_from(Some(f.path()), &e, &[]).unwrap();
    let err = c.validate_for_serve().unwrap_err().to_string();
    assert!(err.contains("3 PINs for 2 tokens"), "{err}");
    assert!(!err.contains("a-pin"), "{err}");
    let e = env(&[("SERIALMINT_HSM_MORE_TOKENS", "ok, @/lib/x.so")]);
    assert!(Config::load_from(None, &e, &[]).is_err());
}

#[test]
fn call_timeout_is_its_own_setting_next_to_the_keygen_timeout() {
    let c = Config::load_from(None, &[], &[]).unwrap();
    assert_eq!(c.hsm_call_timeout, Duration::from_secs(10));
    assert_eq!(c.keygen_timeout, Duration::from_secs(300));
    let f = file("[hsm]\ncall_timeout_secs = 3\nkeygen_timeout_secs = 900\n");
    let e = env(&[("SERIALMINT_HSM_CALL_TIMEOUT_SECS", "4")]);
    let c = Config::load_from(Some(f.path()), &e, &[]).unwrap();
    assert_eq!(c.hsm_call_timeout, Duration::from_secs(4));
    assert_eq!(c.keygen_timeout, Duration::from_secs(900));
    let e = env(&[("SERIALMINT_HSM_CALL_TIMEOUT_SECS", "0")]);
    assert!(Config::load_from(None, &e, &[]).is_err());
}

#[test]
fn secrets_are_redacted_in_debug() {
    let e = env(&[
        ("SERIALMINT_TOKEN_PIN", "s3cr3t-pin"),
        (
            "SERIALMINT_DATABASE_URL",
            "postgres://u:hunter2@127.0.0.1/db",
        ),
    ]);
    let c = Config::load_from(None, &e, &[]).unwrap();
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("s3cr3t-pin") && !debug.contains("hunter2"),
        "{debug}"
    );
    assert_eq!(c.token_pin.expose_secret(), "s3cr3t-pin");
}

#[test]
fn serve_needs_database_and_pin() {
    let c = Config::load_from(None, &[], &[]).unwrap();
    let err = c.validate_for_serve().unwrap_err().to_string();
    assert!(err.contains("SERIALMINT_DATABASE_URL"), "{err}");
}

#[test]
fn errors_keep_their_cause_and_name_no_secret_value() {
    use std::error::Error;
    let e = env(&[("SERIALMINT_HSM_SESSIONS", "x")]);
    let err = Config::load_from(None, &e, &[]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { origin: Origin::Env("SERIALMINT_HSM_SESSIONS"), value: Some(v), why: ValueError::Parse(_) } if v == "x"),
        "{err:?}"
    );
    assert!(err.source().is_some(), "the parse error is the source");
    let err =
        Config::load_from(Some(Path::new("/nonexistent/serialmint.toml")), &[], &[]).unwrap_err();
    assert!(
        err.source().is_some_and(|s| s.is::<std::io::Error>()),
        "{err:?}"
    );
}

/// A secret file with `text` and permission bits `mode`.
fn secret_file(text: &str, mode: u32) -> tempfile::NamedTempFile {
    use std::os::unix::fs::PermissionsExt;
    let f = file(text);
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    f
}

fn path_of(f: &tempfile::NamedTempFile) -> String {
    f.path().display().to_string()
}

#[test]
fn secrets_come_from_private_files_without_their_trailing_newline() {
    let pin = secret_file("Pin-from-file-7Hq\n", 0o600);
    let url = secret_file("postgres://u:file-pw-3Xk@127.0.0.1/db\r\n", 0o400);
    let more = secret_file("more-pin-1\r\n\nmore-pin-2\n", 0o600);
    let toml = file(&format!(
        "[hsm]\npin_file = \"{}\"\nmore_tokens = \"a, b\"\n",
        path_of(&pin)
    ));
    let e = env(&[
        ("SERIALMINT_DATABASE_URL_FILE", &path_of(&url)),
        ("SERIALMINT_HSM_MORE_PINS_FILE", &path_of(&more)),
    ]);
    let c = Config::load_from(Some(toml.path()), &e, &[]).unwrap();
    assert_eq!(c.token_pin.expose_secret(), "Pin-from-file-7Hq");
    assert_eq!(
        c.database_url.expose_secret(),
        "postgres://u:file-pw-3Xk@127.0.0.1/db"
    );
    assert_eq!(c.more_token_pin(0).expose_secret(), "more-pin-1");
    assert_eq!(c.more_token_pin(1).expose_secret(), "more-pin-2");
    assert_eq!(c.token_pin_file.as_deref(), Some(pin.path()));

    // `serialmint config` prints the Debug form: the files, never what they hold.
    let debug = format!("{c:?}");
    for secret in [
        "Pin-from-file-7Hq",
        "file-pw-3Xk",
        "more-pin-1",
        "more-pin-2",
    ] {
        assert!(!debug.contains(secret), "{debug}");
    }
    assert!(debug.contains(&path_of(&pin)), "{debug}");
    assert!(debug.contains("token_pin: \"[redacted]\""), "{debug}");

    // Read once, at load: changing the file later changes nothing already loaded.
    std::fs::write(pin.path(), "another-pin").unwrap();
    assert_eq!(c.token_pin.expose_secret(), "Pin-from-file-7Hq");
}

#[test]
fn group_or_world_readable_secret_files_are_refused_with_the_fix() {
    for mode in [0o640, 0o604, 0o644, 0o660, 0o620] {
        let pin = secret_file("Pin-open-9Zr\n", mode);
        let e = env(&[("SERIALMINT_TOKEN_PIN_FILE", &path_of(&pin))]);
        let err = Config::load_from(None, &e, &[]).unwrap_err();
        assert!(
            matches!(
                &err,
                ConfigError::SecretFile {
                    key: "hsm.pin_file",
                    why: SecretFileError::TooOpen { .. },
                    ..
                }
            ),
            "{mode:o}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&path_of(&pin)), "names the file: {text}");
        assert!(
            text.contains(&format!("chmod 600 {}", path_of(&pin))),
            "says the fix: {text}"
        );
        assert!(text.contains(&format!("{mode:04o}")), "{text}");
        assert!(!text.contains("Pin-open-9Zr"), "{text}");
        assert!(!format!("{err:?}").contains("Pin-open-9Zr"), "{err:?}");
    }
    let url = secret_file("postgres://u:open-pw@h/db", 0o644);
    let e = env(&[("SERIALMINT_DATABASE_URL_FILE", &path_of(&url))]);
    let err = Config::load_from(None, &e, &[]).unwrap_err().to_string();
    assert!(
        err.contains("database.url_file") && err.contains("chmod 600") && !err.contains("open-pw"),
        "{err}"
    );
}

#[test]
fn a_secret_given_directly_and_as_a_file_is_an_error_naming_both() {
    let pin = secret_file("Pin-both-4Lm", 0o600);
    let toml = file(&format!("[hsm]\npin_file = \"{}\"\n", path_of(&pin)));
    let e = env(&[("SERIALMINT_TOKEN_PIN", "Pin-env-8Wc")]);
    let err = Config::load_from(Some(toml.path()), &e, &[])
        .unwrap_err()
        .to_string();
    for name in [
        "hsm.pin",
        "SERIALMINT_TOKEN_PIN",
        "hsm.pin_file",
        "SERIALMINT_TOKEN_PIN_FILE",
    ] {
        assert!(err.contains(name), "{name}: {err}");
    }
    assert!(
        !err.contains("Pin-both-4Lm") && !err.contains("Pin-env-8Wc"),
        "{err}"
    );

    let url = secret_file("postgres://x", 0o600);
    let e = env(&[
        ("SERIALMINT_DATABASE_URL", "postgres://y"),
        ("SERIALMINT_DATABASE_URL_FILE", &path_of(&url)),
    ]);
    let err = Config::load_from(None, &e, &[]).unwrap_err().to_string();
    assert!(
        err.contains("database.url ") && err.contains("database.url_file"),
        "{err}"
    );
    let pins = secret_file("p1\np2\n", 0o600);
    let flags = vec![("hsm.more_pins".to_string(), "p3".to_string())];
    let e = env(&[("SERIALMINT_HSM_MORE_PINS_FILE", &path_of(&pins))]);
    let err = Config::load_from(None, &e, &flags).unwrap_err().to_string();
    assert!(
        err.contains("hsm.more_pins ") && err.contains("hsm.more_pins_file"),
        "{err}"
    );
}

#[test]
fn unusable_secret_files_are_refused_without_their_content() {
    use std::error::Error;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-pin");
    let e = env(&[("SERIALMINT_TOKEN_PIN_FILE", missing.to_str().unwrap())]);
    let err = Config::load_from(None, &e, &[]).unwrap_err();
    assert!(err.to_string().contains("no-such-pin"), "{err}");
    assert!(
        err.source()
            .and_then(|s| s.source())
            .is_some_and(|s| s.is::<std::io::Error>()),
        "the I/O error is the cause: {err:?}"
    );

    let empty = secret_file("\n", 0o600);
    let e = env(&[("SERIALMINT_TOKEN_PIN_FILE", &path_of(&empty))]);
    let err = Config::load_from(None, &e, &[]).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");

    let e = env(&[("SERIALMINT_TOKEN_PIN_FILE", dir.path().to_str().unwrap())]);
    let err = Config::load_from(None, &e, &[]).unwrap_err().to_string();
    assert!(err.contains("hsm.pin_file"), "{err}");

    let big = secret_file(&"x".repeat(70 * 1024), 0o600);
    let e = env(&[("SERIALMINT_TOKEN_PIN_FILE", &path_of(&big))]);
    let err = Config::load_from(None, &e, &[]).unwrap_err().to_string();
    assert!(err.contains("64 KiB"), "{err}");
}

#[test]
fn serve_accepts_the_file_settings_in_place_of_the_secrets() {
    let c = Config::load_from(None, &[], &[]).unwrap();
    let err = c.validate_for_serve().unwrap_err().to_string();
    assert!(err.contains("database.url_file"), "{err}");
    let url = secret_file("postgres://u@127.0.0.1/db\n", 0o600);
    let e = env(&[("SERIALMINT_DATABASE_URL_FILE", &path_of(&url))]);
    let c = Config::load_from(None, &e, &[]).unwrap();
    let err = c.validate_for_serve().unwrap_err().to_string();
    assert!(err.contains("hsm.pin_file"), "{err}");
}

#[test]
fn tls_settings_come_in_pairs() {
    let base = [
        ("SERIALMINT_DATABASE_URL", "postgres://x"),
        ("SERIALMINT_TOKEN_PIN", "p"),
        ("SERIALMINT_PKCS11_MODULE", "/bin/sh"),
    ];
    let check = |extra: &[(&str, &str)]| {
        let mut pairs = base.to_vec();
        pairs.extend_from_slice(extra);
        Config::load_from(None, &env(&pairs), &[])
            .unwrap()
            .validate_for_serve()
    };
    check(&[]).unwrap();
    check(&[
        ("SERIALMINT_DEVICE_TLS_CERT", "/c.pem"),
        ("SERIALMINT_DEVICE_TLS_KEY", "/k.pem"),
        ("SERIALMINT_ADMIN_TLS_CERT", "/c.pem"),
        ("SERIALMINT_ADMIN_TLS_KEY", "/k.pem"),
        ("SERIALMINT_ADMIN_TLS_CLIENT_CA", "/ca.pem"),
    ])
    .unwrap();
    let err = check(&[("SERIALMINT_DEVICE_TLS_CERT", "/c.pem")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("device.tls_cert is set but device.tls_key is not"),
        "{err}"
    );
    let err = check(&[("SERIALMINT_ADMIN_TLS_KEY", "/k.pem")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("admin.tls_key is set but admin.tls_cert is not"),
        "{err}"
    );
    let err = check(&[("SERIALMINT_ADMIN_TLS_CLIENT_CA", "/ca.pem")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("admin.tls_client_ca"), "{err}");
}

#[test]
fn the_example_file_lists_every_setting_commented_and_changes_nothing() {
    let text = example_toml();
    for s in SETTINGS {
        let name = s.key.split_once('.').unwrap().1;
        assert!(
            text.contains(&format!("\n#{name} = ")) && text.contains(s.env),
            "{} missing:\n{text}",
            s.key
        );
    }
    let f = file(&text);
    let c = Config::load_from(Some(f.path()), &[], &[]).unwrap();
    assert_eq!(format!("{c:?}"), format!("{:?}", Config::default()));
    // Uncommenting a line gives a valid setting.
    let f = file(
        &text
            .replace("#sessions = \"\"", "sessions = 3")
            .replace("#batch_max = 8", "batch_max = 4")
            .replace("#max_wait_ms = \"auto\"", "max_wait_ms = 150"),
    );
    let c = Config::load_from(Some(f.path()), &[], &[]).unwrap();
    assert_eq!(c.sign_batch_max, 4);
    assert_eq!(c.sign_max_wait, MaxWait::Fixed(Duration::from_millis(150)));
    assert_eq!(Config::default().sign_max_wait, MaxWait::Auto);
    let f = file(&text.replace("#max_wait_ms = \"auto\"", "max_wait_ms = 0"));
    let c = Config::load_from(Some(f.path()), &[], &[]).unwrap();
    assert_eq!(c.sign_max_wait, MaxWait::Off, "0: the deadline alone");
}

#[test]
fn runtime_worker_threads_default_to_half_the_cores_and_can_be_set() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let c = Config::load_from(None, &env(&[]), &[]).unwrap();
    assert_eq!(c.worker_threads, (cores / 2).max(1));
    let f = file("[runtime]\nworker_threads = 3\n");
    let c = Config::load_from(Some(f.path()), &env(&[]), &[]).unwrap();
    assert_eq!(c.worker_threads, 3);
    let c = Config::load_from(None, &env(&[("SERIALMINT_WORKER_THREADS", "5")]), &[]).unwrap();
    assert_eq!(c.worker_threads, 5);
    let err =
        Config::load_from(None, &env(&[("SERIALMINT_WORKER_THREADS", "0")]), &[]).unwrap_err();
    assert!(
        err.to_string().contains("SERIALMINT_WORKER_THREADS"),
        "{err}"
    );
}
