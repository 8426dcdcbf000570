//! The latency-modelling PKCS#11 module (`pkcs11-latency/`) in front of a real SoftHSM token:
//! serialmint's HSM layer opens it like any module, signs through it (every signature made by
//! SoftHSM and checked), and the module's per-token limit holds with more sessions than it
//! allows (read from its own counters, not from a clock).
//!
//! Run with `cargo nextest run --test hsm_latency` (one process per test: the module and
//! SoftHSM are process-wide).

mod common;
#[path = "common/device.rs"]
mod device;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::path::PathBuf;

use serialmint::assertion::{signing_input, verify_digest_info};
use serialmint::hsm::Hsm;

use device::*;
use softhsm::{latency_module, softhsm_module};

/// (signatures made, most in progress at once) from the loaded module.
fn stats(module: &PathBuf) -> (u64, u64) {
    // SAFETY: the same path cryptoki loaded, so the same module; `pkcs11_latency_stats` has
    // this signature and writes two u64s.
    unsafe {
        let lib = libloading::Library::new(module).unwrap();
        let f: libloading::Symbol<unsafe extern "C" fn(*mut u64, *mut u64)> =
            lib.get(b"pkcs11_latency_stats\0").unwrap();
        let (mut done, mut peak) = (0u64, 0u64);
        f(&mut done, &mut peak);
        (done, peak)
    }
}

/// Opens `token` through the module playing a one-at-a-time token with 20 ms per signature
/// (plus `more` `PKCS11_LATENCY_*` settings), with `sessions` pooled sessions.
async fn open_through_module(
    token: &Token,
    more: &[(&str, &str)],
    sessions: usize,
) -> (PathBuf, Hsm) {
    let module = latency_module();
    // SAFETY: set before any thread of this test reads the environment (the module reads it
    // when cryptoki loads it, below).
    unsafe {
        std::env::set_var("PKCS11_LATENCY_BACKEND", softhsm_module());
        std::env::set_var("PKCS11_LATENCY_SIGN_MS", "20");
        std::env::set_var("PKCS11_LATENCY_PARALLEL", "1");
        for (name, value) in more {
            std::env::set_var(format!("PKCS11_LATENCY_{name}"), value);
        }
    }
    let mut cfg = token.hsm_config();
    cfg.module = module.clone();
    cfg.sessions = sessions;
    let hsm = Hsm::open(cfg)
        .await
        .expect("the token opens through the module");
    (module, hsm)
}

#[tokio::test]
async fn a_one_at_a_time_token_signs_through_the_module_one_at_a_time() {
    let token = Token::new();
    let (module, hsm) = open_through_module(&token, &[("CALL_MS", "1")], 4).await;
    let hsm = std::sync::Arc::new(hsm);
    let public = common::TestKey::root().public;
    let mut tasks = Vec::new();
    for t in 0..4u32 {
        let hsm = hsm.clone();
        let key = token.key_id.clone();
        tasks.push(tokio::spawn(async move {
            let inputs: Vec<_> = (0..3u32)
                .map(|i| signing_input(format!("content {t}/{i}").as_bytes(), 1_700_000_000))
                .collect();
            let dis: Vec<[u8; 83]> = inputs.iter().map(|s| *s.digest_info()).collect();
            let sigs = hsm
                .sign(&key, &dis)
                .await
                .expect("signed through the module");
            (dis, sigs)
        }));
    }
    for t in tasks {
        let (dis, sigs) = t.await.unwrap();
        assert_eq!(sigs.len(), dis.len());
        for (di, sig) in dis.iter().zip(&sigs) {
            verify_digest_info(&public, di, sig).expect("SoftHSM's signature, forwarded");
        }
    }
    let (done, peak) = stats(&module);
    assert_eq!(done, 12, "every signature went through the module's C_Sign");
    assert_eq!(
        peak, 1,
        "never two signatures at once on a one-at-a-time token"
    );
}

/// `Hsm::sign_each` hands each signature of a batch over as soon as the token has made it
/// (and it verified), not when the batch ends: when the callback sees signature i, the
/// module has made exactly i + 1 of the batch's signatures (its own counter, no clock).
#[tokio::test]
async fn each_signature_of_a_batch_is_handed_over_as_soon_as_it_is_made() {
    let token = Token::new();
    let (module, hsm) = open_through_module(&token, &[], 1).await;
    let dis: Vec<[u8; 83]> = (0..4u32)
        .map(|i| *signing_input(format!("content {i}").as_bytes(), 1_700_000_000).digest_info())
        .collect();
    let (before, _) = stats(&module);
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let m = module.clone();
    hsm.sign_each(
        &token.key_id,
        &dis,
        std::sync::Arc::new(move |i, sig| sink.lock().push((i, stats(&m).0, sig))),
    )
    .await
    .expect("signed through the module");
    let seen = seen.lock().clone();
    let public = common::TestKey::root().public;
    assert_eq!(seen.len(), 4, "one hand-over per digest");
    for (k, (i, made, sig)) in seen.iter().enumerate() {
        assert_eq!(*i, k, "in input order");
        assert_eq!(
            *made - before,
            k as u64 + 1,
            "signature {i} handed over when made"
        );
        verify_digest_info(&public, &dis[*i], sig).expect("SoftHSM's signature, forwarded");
    }
}
