//! Codec benchmarks: decode a serial-request + model stream, build + encode a serial, compute
//! the signing input, verify a signature in software.

use std::hint::black_box;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA512, RsaKeyPair};
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
    // PKCS#1 RSAPublicKey DER: SEQUENCE { INTEGER n, INTEGER e } with long-form lengths.
    let der = pair.public_key().as_ref().to_vec();
    let mut ints = Vec::new();
    let mut i = 0;
    let read = |i: &mut usize| {
        let tag = der[*i];
        let mut len = der[*i + 1] as usize;
        *i += 2;
        if len & 0x80 != 0 {
            let n = len & 0x7f;
            len = der[*i..*i + n]
                .iter()
                .fold(0, |a, &b| (a << 8) | b as usize);
            *i += n;
        }
        (tag, len)
    };
    read(&mut i);
    for _ in 0..2 {
        let (_, len) = read(&mut i);
        ints.push(der[i..i + len].to_vec());
        i += len;
    }
    let public = RsaPublicKey::new(&ints[0], &ints[1]);
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
