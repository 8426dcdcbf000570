//! The codec's share of one issuance, without the HSM: decode the device's stream
//! (serial-request + model), verify the device's self-signature (RSA-4096, software), the
//! SHA-512 digest of a serial, and building + encoding the serial around a signature.
//!
//! `cargo bench --bench codec` (set `CODEC_BENCH_QUICK=1` for a short run). The stream is
//! made here: a serial-request for snapd's `developer1-pc.model`, self-signed with snapd's
//! test store key (`tests/fixtures/teststore.pk8`) as device key.

use std::time::Duration;

use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA512};
use std::hint::black_box;

use criterion::{Criterion, Throughput};
use serialmint::assertion::openpgp::hash_suffix;
use serialmint::assertion::{
    AssertionType, HeaderValue, Headers, Model, RsaPublicKey, SerialBuilder, SerialRequest,
    assemble_encoded, build_content, decode, decode_stream, encode_stream, signing_input,
};
use time::OffsetDateTime;

const CREATED: u32 = 1_704_164_645; // 2024-01-02T03:04:05Z

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Signs `content` with `key` as snapd does and returns the encoded assertion.
fn sign(key: &KeyPair, content: &[u8]) -> Vec<u8> {
    let mut msg = content.to_vec();
    msg.extend_from_slice(&hash_suffix(CREATED));
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA512,
        &aws_lc_rs::rand::SystemRandom::new(),
        &msg,
        &mut sig,
    )
    .unwrap();
    assemble_encoded(
        content,
        &signing_input(content, CREATED).encode_signature(&sig),
    )
}

fn main() {
    let quick = std::env::var_os("CODEC_BENCH_QUICK").is_some();
    let device = KeyPair::from_pkcs8(&fixture("teststore.pk8")).unwrap();
    let c: aws_lc_rs::rsa::PublicKeyComponents<Vec<u8>> = device.public_key().into();
    let device_pub = RsaPublicKey::new(&c.n, &c.e);
    let model_text = fixture("snapd/developer1-pc.model");
    let model = Model::try_from(decode(&model_text).unwrap()).unwrap();

    let mut h = Headers::new();
    h.insert("brand-id".into(), HeaderValue::from(model.brand_id()));
    h.insert("device-key".into(), HeaderValue::from(device_pub.encode()));
    h.insert("model".into(), HeaderValue::from(model.model()));
    h.insert("request-id".into(), HeaderValue::from("REQ-bench-0001"));
    h.insert("serial".into(), HeaderValue::from("S-0001"));
    let content =
        build_content(AssertionType::SerialRequest, &h, "", &device_pub.key_id()).unwrap();
    let request = sign(&device, &content);
    let stream = encode_stream([&request[..], &model_text[..]]);
    let req = SerialRequest::try_from(decode_stream(&stream).unwrap().remove(0)).unwrap();
    let hsm_key_id = device_pub.key_id(); // any 64-char id; the HSM is not involved here
    let serial_content = SerialBuilder::from_request(&req, "S-0001", OffsetDateTime::now_utc())
        .content(&hsm_key_id)
        .unwrap();
    let fake_sig = vec![0x5a; 512];

    let mut cr = Criterion::default()
        .sample_size(if quick { 10 } else { 50 })
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(if quick { 1 } else { 3 }))
        .configure_from_args();
    let mut g = cr.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_stream/serial-request+model", |b| {
        b.iter(|| {
            let mut all = decode_stream(black_box(&stream)).unwrap();
            let model = Model::try_from(all.pop().unwrap()).unwrap();
            let req = SerialRequest::try_from(all.pop().unwrap()).unwrap();
            black_box((req, model))
        })
    });
    g.bench_function("verify/serial-request self-signature (RSA-4096)", |b| {
        b.iter(|| req.verify_self_signature().unwrap())
    });
    g.bench_function("digest/serial (SHA-512 signing input)", |b| {
        b.iter(|| black_box(signing_input(black_box(&serial_content), CREATED)))
    });
    g.bench_function("build+encode/serial", |b| {
        b.iter(|| {
            let content = SerialBuilder::from_request(&req, "S-0001", OffsetDateTime::now_utc())
                .content(&hsm_key_id)
                .unwrap();
            let input = signing_input(&content, CREATED);
            black_box(assemble_encoded(
                &content,
                &input.encode_signature(&fake_sig),
            ))
        })
    });
    g.finish();
    cr.final_summary();
}
