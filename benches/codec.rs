//! Codec benchmarks: decode a serial-request + model stream, build + encode a serial, compute
//! the signing input, verify a signature in software.

use std::hint::black_box;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA512, RsaKeyPair, RsaPublicKeyComponents};
use criterion::{Criterion, criterion_group, criterion_main};
use serialmint::assertion::openpgp::hash_suffix;
use serialmint::assertion::{
    AssertionType, HeaderValue, Headers, RsaPublicKey, SerialBuilder, SerialRequest,
    assemble_encoded, build_content, decode, decode_stream, encode_stream, signing_input,
};
use time::macros::datetime;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn key(name: &str) -> (RsaKeyPair, RsaPublicKey) {
    let pair = RsaKeyPair::from_pkcs8(&std::fs::read(format!("{FIX}/{name}")).unwrap()).unwrap();
    let c: RsaPublicKeyComponents<Vec<u8>> = pair.public_key().into();
    let public = RsaPublicKey::new(&c.n, &c.e);
    (pair, public)
}

fn sign(pair: &RsaKeyPair, content: &[u8], created: u32) -> Vec<u8> {
    let input = signing_input(content, created);
    let mut msg = content.to_vec();
    msg.extend_from_slice(&hash_suffix(created));
    let mut sig = vec![0; pair.public_modulus_len()];
    pair.sign(&RSA_PKCS1_SHA512, &SystemRandom::new(), &msg, &mut sig)
        .unwrap();
    assemble_encoded(content, &input.encode_signature(&sig))
}

fn benches(c: &mut Criterion) {
    let (store, store_pub) = key("teststore.pk8");
    let (_, root_pub) = key("testroot.pk8");
    let mut h = Headers::new();
    h.insert("brand-id".into(), "developer1".into());
    h.insert("model".into(), "my-model".into());
    h.insert("request-id".into(), "REQ-ID-1".into());
    h.insert("device-key".into(), HeaderValue::String(store_pub.encode()));
    let content = build_content(AssertionType::SerialRequest, &h, "", &store_pub.key_id()).unwrap();
    let req_text = sign(&store, &content, 1_704_164_645);
    let model = std::fs::read(format!("{FIX}/snapd/developer1-pc.model")).unwrap();
    let stream = encode_stream([req_text.as_slice(), model.as_slice()]);

    c.bench_function("decode serial-request + model stream", |b| {
        b.iter(|| decode_stream(black_box(&stream)).unwrap())
    });

    let req = SerialRequest::try_from(decode(&req_text).unwrap()).unwrap();
    let root_id = root_pub.key_id();
    c.bench_function("build + encode serial content", |b| {
        b.iter(|| {
            SerialBuilder::from_request(
                black_box(&req),
                "serial-0001",
                datetime!(2024-01-02 03:04:05 UTC),
            )
            .content(&root_id)
            .unwrap()
        })
    });

    let serial_content =
        SerialBuilder::from_request(&req, "serial-0001", datetime!(2024-01-02 03:04:05 UTC))
            .content(&root_id)
            .unwrap();
    c.bench_function("signing_input (SHA-512 DigestInfo)", |b| {
        b.iter(|| signing_input(black_box(&serial_content), 1_704_164_645))
    });

    c.bench_function("verify serial-request self-signature (RSA-4096)", |b| {
        b.iter(|| black_box(&req).verify_self_signature().unwrap())
    });
}

criterion_group!(codec, benches);
criterion_main!(codec);
