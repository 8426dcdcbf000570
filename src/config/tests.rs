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
