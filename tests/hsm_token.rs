//! HSM layer on a real SoftHSMv2 token: open errors, key generation and attributes, listing
//! and lookup, signing with software verification, concurrency, re-login, keygen timeout.
//! Run with `cargo nextest run` (one process per test: SoftHSM is process-wide).

#[path = "common/softhsm.rs"]
mod softhsm;

use std::time::{Duration, Instant};

use aws_lc_rs::digest::{Digest, SHA512};
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA512, RsaPublicKeyComponents};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use secrecy::SecretString;
use serialmint::hsm::{Hsm, HsmConfig, HsmError, KeyInfo};
use softhsm::{SoftHsm, digest_info_of, runtime, softhsm_module, with_user_session};

const LABEL: &str = "serialmint-test";
const PIN: &str = "4321";

fn setup() -> SoftHsm {
    let s = SoftHsm::new();
    s.init_token(LABEL, PIN);
    s
}

fn config(sessions: usize) -> HsmConfig {
    let mut c = HsmConfig::new(softhsm_module(), LABEL, SecretString::from(PIN));
    c.sessions = sessions;
    c
}

/// Independent check with aws-lc-rs (not the layer's own verifier).
fn assert_verifies(key: &KeyInfo, di: &[u8; 83], sig: &[u8]) {
    assert_eq!(sig.len(), 512, "RSA-4096 signature length");
    let pk = RsaPublicKeyComponents {
        n: key.public.modulus(),
        e: key.public.exponent(),
    }
    .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA512)
    .unwrap();
    let d = Digest::import_less_safe(&di[19..], &SHA512).unwrap();
    pk.verify_digest_sig(&d, sig).expect("signature verifies");
}

#[test]
fn open_reports_missing_label_and_refused_pin_without_the_pin() {
    let _s = setup();
    runtime().block_on(async {
        let mut c = config(1);
        c.tokens[0].label = "no-such-token".into();
        let e = Hsm::open(c).await.unwrap_err();
        assert!(matches!(e, HsmError::TokenNotFound { .. }), "{e}");
        assert!(e.to_string().contains(LABEL), "lists the labels found: {e}");

        let mut c = config(1);
        c.tokens[0].pin = SecretString::from("99999999");
        let e = Hsm::open(c).await.unwrap_err();
        assert!(matches!(e, HsmError::Fatal(_)), "{e}");
        assert!(e.to_string().contains("PinIncorrect"), "{e}");
        assert!(!e.to_string().contains("99999999"), "PIN leaked: {e}");
        assert!(!format!("{e:?}").contains("99999999"), "PIN leaked: {e:?}");
    });
}

#[test]
fn generated_keys_are_sensitive_never_extractable_and_found_by_id() {
    let _s = setup();
    runtime().block_on(async {
        let hsm = Hsm::open(config(2)).await.unwrap();
        assert!(hsm.list_keys().await.unwrap().is_empty());
        let k = hsm.generate_key("brand-key-1").await.unwrap();
        assert_eq!(k.name, "brand-key-1");
        assert_eq!(k.public.bits(), 4096);
        assert_eq!(k.key_id, k.public.key_id());
        assert_eq!(k.key_id.len(), 64);

        let listed = hsm.list_keys().await.unwrap();
        assert_eq!(listed, vec![k.clone()]);
        assert_eq!(hsm.find_key(&k.key_id).await.unwrap(), Some(k.clone()));
        let other = "A".repeat(64);
        assert_eq!(hsm.find_key(&other).await.unwrap(), None);
        assert!(matches!(
            hsm.find_key("not-a-key-id").await,
            Err(HsmError::InvalidInput(_))
        ));
        assert!(matches!(
            hsm.generate_key("brand-key-1").await,
            Err(HsmError::InvalidInput(_))
        ));
        assert!(matches!(
            hsm.generate_key("").await,
            Err(HsmError::InvalidInput(_))
        ));

        // Attributes, read next to the pool through SoftHSM directly.
        let id = k.public.key_id_bytes().to_vec();
        with_user_session(&softhsm_module(), LABEL, PIN, |s| {
            let privs = s
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Id(id.clone()),
                ])
                .unwrap();
            assert_eq!(privs.len(), 1);
            let attrs = s
                .get_attributes(
                    privs[0],
                    &[
                        AttributeType::Token,
                        AttributeType::Private,
                        AttributeType::Sensitive,
                        AttributeType::AlwaysSensitive,
                        AttributeType::Extractable,
                        AttributeType::NeverExtractable,
                        AttributeType::Sign,
                        AttributeType::Label,
                    ],
                )
                .unwrap();
            for a in &attrs {
                match a {
                    Attribute::Token(v)
                    | Attribute::Private(v)
                    | Attribute::Sensitive(v)
                    | Attribute::AlwaysSensitive(v)
                    | Attribute::NeverExtractable(v)
                    | Attribute::Sign(v) => assert!(*v, "{a:?}"),
                    Attribute::Extractable(v) => assert!(!*v, "extractable"),
                    Attribute::Label(v) => assert_eq!(v, b"brand-key-1"),
                    _ => {}
                }
            }
            assert_eq!(attrs.len(), 8, "all attributes readable: {attrs:?}");
            // The private exponent is refused (SoftHSM: CKR_ATTRIBUTE_SENSITIVE, which
            // cryptoki reports by leaving the attribute out).
            match s.get_attributes(
                privs[0],
                &[AttributeType::PrivateExponent, AttributeType::Prime1],
            ) {
                Ok(v) => assert!(
                    !v.iter()
                        .any(|a| matches!(a, Attribute::PrivateExponent(_) | Attribute::Prime1(_))),
                    "private parts readable: {v:?}"
                ),
                Err(e) => eprintln!("private exponent read refused: {e}"),
            }
            // And it cannot be wrapped out.
            let wrapping = s
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Token(false),
                        Attribute::ValueLen(32u64.into()),
                        Attribute::Wrap(true),
                        Attribute::KeyType(KeyType::AES),
                    ],
                )
                .unwrap();
            let wrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, wrapping, privs[0]);
            assert!(wrapped.is_err(), "private key could be wrapped");
            eprintln!("wrap refused: {}", wrapped.unwrap_err());
        });
    });
}

#[test]
fn signs_with_an_imported_key_and_verifies() {
    let s = setup();
    let key_file = softhsm::write_rsa_key(s.dir.path(), 4096, true);
    let key_id = s.import_key(LABEL, PIN, &key_file, "imported");
    runtime().block_on(async {
        let hsm = Hsm::open(config(2)).await.unwrap();
        let key = hsm
            .find_key(&key_id)
            .await
            .unwrap()
            .expect("imported key found");
        assert_eq!(key.name, "imported");
        let dis: Vec<[u8; 83]> = (0..5u8).map(|i| digest_info_of(&[i; 100])).collect();
        let sigs = hsm.sign(&key_id, &dis).await.unwrap();
        assert_eq!(sigs.len(), 5);
        for (di, sig) in dis.iter().zip(&sigs) {
            assert_verifies(&key, di, sig);
        }
        // PKCS#1 v1.5 is deterministic.
        assert_eq!(hsm.sign(&key_id, &dis[..1]).await.unwrap()[0], sigs[0]);
        assert!(hsm.sign(&key_id, &[]).await.unwrap().is_empty());

        let mut bad = dis[0];
        bad[1] = 0x31;
        assert!(matches!(
            hsm.sign(&key_id, &[bad]).await,
            Err(HsmError::InvalidInput(_))
        ));
        let missing = "B".repeat(64);
        assert!(matches!(
            hsm.sign(&missing, &dis).await,
            Err(HsmError::KeyNotFound(_))
        ));
        assert!(matches!(
            hsm.sign("x", &dis).await,
            Err(HsmError::InvalidInput(_))
        ));
    });
}

#[test]
fn imports_pkcs8_der_too() {
    let s = setup();
    let key_file = softhsm::write_rsa_key(s.dir.path(), 2048, false);
    let key_id = s.import_key(LABEL, PIN, &key_file, "der");
    runtime().block_on(async {
        let hsm = Hsm::open(config(1)).await.unwrap();
        let keys = hsm.list_keys().await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].key_id, key_id);
        assert_eq!(keys[0].public.bits(), 2048);
        let di = digest_info_of(b"x");
        hsm.sign(&key_id, &[di]).await.unwrap();
    });
}

#[test]
fn many_concurrent_signers_share_a_small_pool() {
    let s = setup();
    let key_file = softhsm::write_rsa_key(s.dir.path(), 4096, false);
    let key_id = s.import_key(LABEL, PIN, &key_file, "k");
    runtime().block_on(async {
        let hsm = Hsm::open(config(2)).await.unwrap();
        let key = hsm.find_key(&key_id).await.unwrap().unwrap();
        let mut tasks = Vec::new();
        for t in 0..16u8 {
            let hsm = hsm.clone();
            let key_id = key_id.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..6u8 {
                    let di = digest_info_of(&[t, i]);
                    let sig = hsm.sign(&key_id, &[di]).await.unwrap().remove(0);
                    out.push((di, sig));
                }
                out
            }));
        }
        let mut n = 0;
        for t in tasks {
            for (di, sig) in t.await.unwrap() {
                assert_verifies(&key, &di, &sig);
                n += 1;
            }
        }
        assert_eq!(n, 96);
        let h = hsm.health();
        assert!(h.is_up());
        assert_eq!(h.tokens[0].max_sessions, 2);
        assert!(h.tokens[0].sessions <= 2);
        assert!(
            !h.tokens[0].connection_per_session,
            "SoftHSM shares one context"
        );
    });
}

#[test]
fn cancelled_signers_give_every_session_back() {
    let s = setup();
    let key_file = softhsm::write_rsa_key(s.dir.path(), 4096, false);
    let key_id = s.import_key(LABEL, PIN, &key_file, "k");
    runtime().block_on(async {
        let hsm = Hsm::open(config(2)).await.unwrap();
        hsm.sign(&key_id, &[digest_info_of(b"warm")]).await.unwrap();
        // Requests that give up while their signature is being made (or while they wait for a
        // session): the call threads put the sessions back by themselves.
        for round in 0..5u8 {
            let mut tasks = Vec::new();
            for t in 0..6u8 {
                let (hsm, key_id) = (hsm.clone(), key_id.clone());
                tasks.push(tokio::spawn(async move {
                    hsm.sign(&key_id, &[digest_info_of(&[round, t])]).await
                }));
            }
            tokio::time::sleep(Duration::from_millis(3 + 4 * u64::from(round))).await;
            for t in &tasks {
                t.abort();
            }
            for t in tasks {
                let _ = t.await;
            }
        }
        let start = Instant::now();
        loop {
            let h = hsm.health();
            let t = &h.tokens[0];
            if t.sessions == 2 && t.available == 2 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "sessions not back in the pool: {h:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Both sessions still sign, concurrently; none was lost or closed.
        let (d1, d2) = ([digest_info_of(b"after 1")], [digest_info_of(b"after 2")]);
        let (a, b) = tokio::join!(hsm.sign(&key_id, &d1), hsm.sign(&key_id, &d2));
        a.unwrap();
        b.unwrap();
        let h = hsm.health();
        assert!(h.is_up(), "{h:?}");
        assert_eq!(h.tokens[0].abandoned_calls, 0, "{h:?}");
        assert!(h.tokens[0].sessions <= 2, "{h:?}");
    });
}

#[test]
fn logs_in_again_after_the_token_was_logged_out() {
    let s = setup();
    let key_file = softhsm::write_rsa_key(s.dir.path(), 2048, false);
    let key_id = s.import_key(LABEL, PIN, &key_file, "k");
    runtime().block_on(async {
        let hsm = Hsm::open(config(2)).await.unwrap();
        let di = digest_info_of(b"before");
        hsm.sign(&key_id, &[di]).await.unwrap();
        // Log the whole application out of the token, behind the pool's back.
        with_user_session(&softhsm_module(), LABEL, PIN, |s| s.logout().unwrap());
        for i in 0..4u8 {
            hsm.sign(&key_id, &[digest_info_of(&[i])]).await.unwrap();
        }
        assert!(hsm.health().is_up());
    });
}

#[test]
fn key_generation_timeout_is_reported_and_the_late_key_destroyed() {
    let _s = setup();
    runtime().block_on(async {
        let mut c = config(1);
        c.keygen_timeout = Duration::from_millis(1);
        let hsm = Hsm::open(c).await.unwrap();
        let e = hsm.generate_key("slow").await.unwrap_err();
        assert!(matches!(e, HsmError::Timeout(_)), "{e}");
        assert!(hsm.health().is_up());
        // The pair that finishes after the caller gave up is destroyed again: it never shows
        // up, and nothing labelled "slow" is left once generation is surely over (SoftHSM
        // needs 0.5-2.5 s; 15 s is generous).
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            let keys = hsm.list_keys().await.unwrap();
            assert!(keys.iter().all(|k| k.name != "slow"), "late key kept");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let leftover = with_user_session(&softhsm_module(), LABEL, PIN, |s| {
            s.find_objects(&[Attribute::Label(b"slow".to_vec())])
                .unwrap()
                .len()
        });
        assert_eq!(leftover, 0, "late key pair not destroyed");
    });
}

#[test]
fn a_wrong_signature_from_a_token_is_caught_before_it_is_returned() {
    let s = SoftHsm::new();
    s.init_token("good", PIN);
    s.init_token("evil", PIN);
    let good = softhsm::write_rsa_key(s.dir.path(), 2048, false);
    let key_id = s.import_key("good", PIN, &good, "k");
    let other_dir = tempfile::tempdir().unwrap();
    let other = softhsm::write_rsa_key(other_dir.path(), 2048, false);
    // "evil" holds a different key under the same CKA_ID.
    let id = serialmint::hsm::decode_key_id(&key_id).unwrap().to_vec();
    s.import_key_as("evil", PIN, &other, "k", Some(id));
    runtime().block_on(async {
        let mut c = HsmConfig::new(softhsm_module(), "good", SecretString::from(PIN));
        c.tokens.push(serialmint::hsm::TokenSpec::new(
            "evil",
            SecretString::from(PIN),
        ));
        c.sessions = 1;
        let hsm = Hsm::open(c).await.unwrap();
        let key = hsm
            .find_key(&key_id)
            .await
            .unwrap()
            .expect("found on the good token");
        let (mut good_sigs, mut caught) = (0, 0);
        for i in 0..12u8 {
            let di = digest_info_of(&[i]);
            match hsm.sign(&key_id, &[di]).await {
                Ok(sigs) => {
                    assert_verifies_any(&key, &di, &sigs[0]);
                    good_sigs += 1;
                }
                Err(HsmError::Fatal(m)) => {
                    assert!(m.contains("verification") && m.contains("evil"), "{m}");
                    caught += 1;
                }
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        assert!(
            good_sigs > 0 && caught > 0,
            "good {good_sigs}, caught {caught}"
        );
    });
}

fn assert_verifies_any(key: &KeyInfo, di: &[u8; 83], sig: &[u8]) {
    let pk = RsaPublicKeyComponents {
        n: key.public.modulus(),
        e: key.public.exponent(),
    }
    .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA512)
    .unwrap();
    let d = Digest::import_less_safe(&di[19..], &SHA512).unwrap();
    pk.verify_digest_sig(&d, sig)
        .expect("only verified signatures are returned");
}
