//! One whole issuance in-process, no HTTP and no database: decode the device's stream, verify
//! its self-signature, build the serial, digest it, sign on a SoftHSM token through the `Hsm`
//! pool, encode the answer. Run with 1 and 2 pooled sessions (one issuing task per session),
//! so it can be set against `hsm_sign`'s bare sign rate: what the codec costs on top of the
//! HSM is the gap between the two.
//!
//! `cargo bench --bench issuance` (set `ISSUANCE_BENCH_QUICK=1` for a short run). Uses a
//! private token in a temporary directory (never the shared one).

#[path = "../tests/common/softhsm.rs"]
mod softhsm;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA512};
use criterion::{Criterion, Throughput};
use secrecy::SecretString;
use serialmint::assertion::openpgp::hash_suffix;
use serialmint::assertion::{
    AssertionType, HeaderValue, Headers, Model, RsaPublicKey, SerialBuilder, SerialRequest,
    assemble_encoded, build_content, decode, decode_stream, encode_stream, signing_input,
};
use serialmint::hsm::{Hsm, HsmConfig};
use softhsm::{SoftHsm, softhsm_module};
use time::OffsetDateTime;

const LABEL: &str = "bench";
const PIN: &str = "1234";
const CREATED: u32 = 1_704_164_645;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The device's stream: serial-request (self-signed with snapd's test store key) + model.
fn device_stream() -> Vec<u8> {
    let device = KeyPair::from_pkcs8(&fixture("teststore.pk8")).unwrap();
    let c: aws_lc_rs::rsa::PublicKeyComponents<Vec<u8>> = device.public_key().into();
    let public = RsaPublicKey::new(&c.n, &c.e);
    let model_text = fixture("snapd/developer1-pc.model");
    let model = Model::try_from(decode(&model_text).unwrap()).unwrap();
    let mut h = Headers::new();
    h.insert("brand-id".into(), HeaderValue::from(model.brand_id()));
    h.insert("device-key".into(), HeaderValue::from(public.encode()));
    h.insert("model".into(), HeaderValue::from(model.model()));
    h.insert("request-id".into(), HeaderValue::from("REQ-bench-0001"));
    let content = build_content(AssertionType::SerialRequest, &h, "", &public.key_id()).unwrap();
    let mut msg = content.clone();
    msg.extend_from_slice(&hash_suffix(CREATED));
    let mut sig = vec![0; device.public_modulus_len()];
    device
        .sign(
            &RSA_PKCS1_SHA512,
            &aws_lc_rs::rand::SystemRandom::new(),
            &msg,
            &mut sig,
        )
        .unwrap();
    let request = assemble_encoded(
        &content,
        &signing_input(&content, CREATED).encode_signature(&sig),
    );
    encode_stream([&request[..], &model_text[..]])
}

/// One issuance, as the device plane does it minus HTTP and Postgres.
async fn issue(hsm: &Hsm, key_id: &str, stream: &[u8], n: u64) -> Vec<u8> {
    let mut all = decode_stream(stream).unwrap();
    let model = Model::try_from(all.pop().unwrap()).unwrap();
    let req = SerialRequest::try_from(all.pop().unwrap()).unwrap();
    req.verify_self_signature().unwrap();
    assert_eq!(req.model(), model.model());
    let now = OffsetDateTime::now_utc();
    let content = SerialBuilder::from_request(&req, &format!("S-{n}"), now)
        .content(key_id)
        .unwrap();
    let input = signing_input(&content, now.unix_timestamp() as u32);
    let sig = hsm
        .sign(key_id, std::slice::from_ref(input.digest_info()))
        .await
        .unwrap();
    assemble_encoded(&content, &input.encode_signature(&sig[0]))
}

async fn run(hsm: &Hsm, key_id: &str, stream: &Arc<Vec<u8>>, total: u64, tasks: usize) -> Duration {
    let left = Arc::new(AtomicU64::new(total));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (hsm, key_id, left, stream) = (
            hsm.clone(),
            key_id.to_string(),
            left.clone(),
            stream.clone(),
        );
        handles.push(tokio::spawn(async move {
            while let Ok(n) =
                left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
            {
                std::hint::black_box(issue(&hsm, &key_id, &stream, n).await);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

fn main() {
    let quick = std::env::var_os("ISSUANCE_BENCH_QUICK").is_some();
    let s = SoftHsm::new();
    s.init_token(LABEL, PIN);
    let key_file = softhsm::write_rsa_key(s.dir.path(), 4096, false);
    let key_id = s.import_key(LABEL, PIN, &key_file, "bench-key");
    let rt = softhsm::runtime();
    let stream = Arc::new(device_stream());

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(if quick { 2 } else { 4 }))
        .configure_from_args();
    let mut g = c.benchmark_group("issuance");
    g.throughput(Throughput::Elements(1));
    for n in [1usize, 2] {
        let mut cfg = HsmConfig::new(softhsm_module(), LABEL, SecretString::from(PIN));
        cfg.sessions = n;
        let hsm = rt.block_on(Hsm::open(cfg)).unwrap();
        g.bench_function(format!("in_process/{n}_sessions"), |b| {
            b.to_async(&rt)
                .iter_custom(|iters| run(&hsm, &key_id, &stream, iters, n))
        });
    }
    g.finish();
    c.final_summary();
}
