//! Every row of `shared/vectors/{acceptance,stream,body}_probe.txt`, rebuilt in Rust and
//! checked to be accepted or rejected as snapd 2.57 does.

mod common;

use aws_lc_rs::signature::{self, RsaEncoding};
use common::*;
use serialmint::assertion::openpgp::{encode_v1, write_packet_header};
use serialmint::assertion::{
    AssertionType, Decoder, HeaderValue, Headers, SerialRequest, build_content, decode,
};

#[derive(Clone, Copy)]
struct Opts {
    algo: u8,
    hash_id: u8,
    sha256: bool,
    no_ctime: bool,
    issuer_unhashed: bool,
    issuer_hashed: bool,
    strip_mpi: bool,
    sig_type: u8,
    old_format: bool,
}

const STD: Opts = Opts {
    algo: 1,
    hash_id: 10,
    sha256: false,
    no_ctime: false,
    issuer_unhashed: false,
    issuer_hashed: false,
    strip_mpi: false,
    sig_type: 0,
    old_format: false,
};

/// `signX` of acceptance_probe.go.
fn sign_x(content: &[u8], key: &TestKey, o: Opts) -> String {
    let mut hashed = Vec::new();
    if !o.no_ctime {
        hashed.extend_from_slice(&[5, 2]);
        hashed.extend_from_slice(&T2024.to_be_bytes());
    }
    let issuer = [0x09, 0x10, 1, 2, 3, 4, 5, 6, 7, 8];
    if o.issuer_hashed {
        hashed.extend_from_slice(&issuer);
    }
    let mut sig_hdr = vec![4, o.sig_type, o.algo, o.hash_id, 0, hashed.len() as u8];
    sig_hdr.extend_from_slice(&hashed);
    let l = sig_hdr.len() as u32;
    let mut msg = content.to_vec();
    msg.extend_from_slice(&sig_hdr);
    msg.extend_from_slice(&[4, 0xff]);
    msg.extend_from_slice(&l.to_be_bytes());
    let alg: &'static dyn RsaEncoding = if o.sha256 {
        &signature::RSA_PKCS1_SHA256
    } else {
        &signature::RSA_PKCS1_SHA512
    };
    let digest = if o.sha256 {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &msg)
    } else {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, &msg)
    };
    let raw = key.raw_sign(alg, &msg);
    let mut body = sig_hdr.clone();
    if o.issuer_unhashed {
        body.extend_from_slice(&[0, issuer.len() as u8]);
        body.extend_from_slice(&issuer);
    } else {
        body.extend_from_slice(&[0, 0]);
    }
    body.extend_from_slice(&digest.as_ref()[..2]);
    if o.strip_mpi {
        let first = raw.iter().position(|&b| b != 0).unwrap();
        let v = &raw[first..];
        let bits = (v.len() - 1) * 8 + (8 - v[0].leading_zeros() as usize);
        body.extend_from_slice(&(bits as u16).to_be_bytes());
        body.extend_from_slice(v);
    } else {
        body.extend_from_slice(&((raw.len() * 8) as u16).to_be_bytes());
        body.extend_from_slice(&raw);
    }
    let mut pkt = Vec::new();
    if o.old_format {
        pkt.extend_from_slice(&[0x89, (body.len() >> 8) as u8, body.len() as u8]);
    } else {
        write_packet_header(&mut pkt, 2, body.len());
    }
    pkt.extend_from_slice(&body);
    encode_v1(&pkt)
}

const CANON: [&str; 9] = [
    "type",
    "authority-id",
    "brand-id",
    "model",
    "serial",
    "device-key",
    "device-key-sha3-384",
    "timestamp",
    "sign-key-sha3-384",
];

fn line(k: &str, dev_enc: &str, dev_id: &str, root_id: &str) -> String {
    match k {
        "type" => "type: serial".into(),
        "authority-id" => "authority-id: testrootorg".into(),
        "brand-id" => "brand-id: testrootorg".into(),
        "model" => "model: my-model".into(),
        "serial" => "serial: 1".into(),
        "device-key" => format!("device-key:\n    {}", dev_enc.replace('\n', "\n    ")),
        "device-key-sha3-384" => format!("device-key-sha3-384: {dev_id}"),
        "timestamp" => "timestamp: 2024-01-02T03:04:05Z".into(),
        "sign-key-sha3-384" => format!("sign-key-sha3-384: {root_id}"),
        _ => unreachable!(),
    }
}

struct Probe {
    root: TestKey,
    dev_enc: String,
    dev_id: String,
}

impl Probe {
    fn new() -> Self {
        let store = TestKey::store();
        Self {
            root: TestKey::root(),
            dev_enc: store.public.encode(),
            dev_id: store.public.key_id(),
        }
    }

    fn build(&self, order: &[&str], over: &[(&str, &str)]) -> String {
        let root_id = self.root.public.key_id();
        order
            .iter()
            .filter_map(|k| {
                let v = over
                    .iter()
                    .find(|(o, _)| o == k)
                    .map(|(_, v)| (*v).to_owned())
                    .unwrap_or_else(|| line(k, &self.dev_enc, &self.dev_id, &root_id));
                (!v.is_empty()).then_some(v)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Decode + `Database.Check` against the test root, as `try` does in the Go probe.
    fn try_row(&self, content: &str, o: Opts, suffix: &str) -> Result<(), String> {
        let enc = format!(
            "{content}\n\n{}{suffix}",
            sign_x(content.as_bytes(), &self.root, o)
        );
        let a = decode(enc.as_bytes()).map_err(|e| e.to_string())?;
        test_trust()
            .check(&a, ts("2026-01-01T00:00:00Z"))
            .map_err(|e| e.to_string())
    }
}

fn expect(name: &str, got: Result<(), String>, accepted: bool, why: &str) {
    match (&got, accepted) {
        (Ok(()), true) => {}
        (Err(e), false) => assert!(
            e.contains(why),
            "{name}: error {e:?} should mention {why:?}"
        ),
        _ => panic!(
            "{name}: got {got:?}, snapd {}",
            if accepted { "accepts" } else { "rejects" }
        ),
    }
}

#[test]
fn acceptance_probe_rows() {
    let p = Probe::new();
    let base = p.build(&CANON, &[]);
    let with = |over: &[(&str, &str)]| p.build(&CANON, over);
    let o = |f: fn(&mut Opts)| {
        let mut x = STD;
        f(&mut x);
        x
    };
    let rows: Vec<(&str, String, Opts, &str, bool, &str)> = vec![
        ("baseline", base.clone(), STD, "\n", true, ""),
        (
            "no trailing newline after sig",
            base.clone(),
            STD,
            "",
            true,
            "",
        ),
        (
            "two trailing newlines after sig",
            base.clone(),
            STD,
            "\n\n",
            false,
            "body length and declared body-length don't match",
        ),
        (
            "SHA-256 signature",
            base.clone(),
            o(|x| {
                x.hash_id = 8;
                x.sha256 = true
            }),
            "\n",
            true,
            "",
        ),
        (
            "pubkey algo 3",
            base.clone(),
            o(|x| x.algo = 3),
            "\n",
            false,
            "public key and signature use different algorithms",
        ),
        (
            "no creation time subpacket",
            base.clone(),
            o(|x| x.no_ctime = true),
            "\n",
            false,
            "no creation time in signature",
        ),
        (
            "issuer subpacket unhashed",
            base.clone(),
            o(|x| x.issuer_unhashed = true),
            "\n",
            true,
            "",
        ),
        (
            "issuer subpacket hashed",
            base.clone(),
            o(|x| x.issuer_hashed = true),
            "\n",
            true,
            "",
        ),
        (
            "canonical (stripped) MPI",
            base.clone(),
            o(|x| x.strip_mpi = true),
            "\n",
            true,
            "",
        ),
        (
            "sig type 0x01",
            base.clone(),
            o(|x| x.sig_type = 1),
            "\n",
            true,
            "",
        ),
        (
            "old-format packet header",
            base.clone(),
            o(|x| x.old_format = true),
            "\n",
            true,
            "",
        ),
        (
            "type not first",
            p.build(
                &[
                    "authority-id",
                    "type",
                    "brand-id",
                    "model",
                    "serial",
                    "device-key",
                    "device-key-sha3-384",
                    "timestamp",
                    "sign-key-sha3-384",
                ],
                &[],
            ),
            STD,
            "\n",
            true,
            "",
        ),
        (
            "sign-key not last",
            p.build(
                &[
                    "type",
                    "authority-id",
                    "sign-key-sha3-384",
                    "brand-id",
                    "model",
                    "serial",
                    "device-key",
                    "device-key-sha3-384",
                    "timestamp",
                ],
                &[],
            ),
            STD,
            "\n",
            true,
            "",
        ),
        (
            "extra unknown header",
            with(&[("serial", "serial: 1\nfoo: bar")]),
            STD,
            "\n",
            true,
            "",
        ),
        (
            "timestamp w/o zone",
            with(&[("timestamp", "timestamp: 2024-01-02T03:04:05")]),
            STD,
            "\n",
            false,
            "\"timestamp\" header is not a RFC3339 date",
        ),
        (
            "timestamp fractional secs",
            with(&[("timestamp", "timestamp: 2024-01-02T03:04:05.123Z")]),
            STD,
            "\n",
            true,
            "",
        ),
        (
            "timestamp +01:00",
            with(&[("timestamp", "timestamp: 2024-01-02T03:04:05+01:00")]),
            STD,
            "\n",
            true,
            "",
        ),
        (
            "timestamp before signing key since",
            with(&[("timestamp", "timestamp: 2015-01-02T03:04:05Z")]),
            STD,
            "\n",
            false,
            "serial assertion timestamp outside of signing key validity",
        ),
        (
            "model uppercase",
            with(&[("model", "model: My-model")]),
            STD,
            "\n",
            false,
            "\"model\" header cannot contain uppercase letters",
        ),
        (
            "serial with '/'",
            with(&[("serial", "serial: a/b")]),
            STD,
            "\n",
            false,
            "\"serial\" primary key header cannot contain '/'",
        ),
        (
            "serial with space inside",
            with(&[("serial", "serial: a b")]),
            STD,
            "\n",
            true,
            "",
        ),
        (
            "revision: 0 explicit",
            with(&[("authority-id", "authority-id: testrootorg\nrevision: 0")]),
            STD,
            "\n",
            true,
            "",
        ),
        (
            "revision: 01",
            with(&[("authority-id", "authority-id: testrootorg\nrevision: 01")]),
            STD,
            "\n",
            false,
            "\"revision\" header has invalid prefix zeros: 01",
        ),
        (
            "body-length: 0 explicit",
            with(&[(
                "timestamp",
                "timestamp: 2024-01-02T03:04:05Z\nbody-length: 0",
            )]),
            STD,
            "\n",
            true,
            "",
        ),
        (
            "header trailing space value",
            with(&[("serial", "serial: 1 ")]),
            STD,
            "\n",
            true,
            "",
        ),
        (
            "header 'name:value' no space",
            with(&[("serial", "serial:1")]),
            STD,
            "\n",
            false,
            "header entry should have a space or newline (for multiline) before value: \"serial:1\"",
        ),
        (
            "device-key-sha3-384 missing",
            with(&[("device-key-sha3-384", "")]),
            STD,
            "\n",
            false,
            "\"device-key-sha3-384\" header is mandatory",
        ),
        (
            "CRLF line ending in header",
            with(&[("serial", "serial: 1\r")]),
            STD,
            "\n",
            true,
            "",
        ),
        (
            "body without body-length",
            format!("{base}\n\nsome body"),
            STD,
            "\n",
            false,
            "don't match: 9 != 0",
        ),
        (
            "body with body-length",
            format!(
                "{}\n\nsome body",
                with(&[(
                    "timestamp",
                    "timestamp: 2024-01-02T03:04:05Z\nbody-length: 9"
                )])
            ),
            STD,
            "\n",
            true,
            "",
        ),
    ];
    for (name, content, opts, suffix, accepted, why) in rows {
        expect(name, p.try_row(&content, opts, suffix), accepted, why);
    }
    let single_line = format!("device-key: {}", p.dev_enc.replace('\n', ""));
    expect(
        "device-key single-line base64",
        p.try_row(&with(&[("device-key", &single_line)]), STD, "\n"),
        true,
        "",
    );
}

#[test]
fn serial_request_self_signature_is_checked() {
    let store = TestKey::store();
    let mut h = Headers::new();
    h.insert("brand-id".into(), "b".into());
    h.insert("model".into(), "m".into());
    h.insert("request-id".into(), "r".into());
    h.insert(
        "device-key".into(),
        HeaderValue::String(store.public.encode()),
    );
    let content =
        build_content(AssertionType::SerialRequest, &h, "", &store.public.key_id()).unwrap();
    let good = store.sign(&content, T2024);
    let req = SerialRequest::try_from(decode(&good).unwrap()).unwrap();
    req.verify_self_signature().unwrap();
    // signed by another key: decodes (ids match) but does not verify
    let bad = TestKey::root().sign(&content, T2024);
    let req = SerialRequest::try_from(decode(&bad).unwrap()).unwrap();
    assert!(req.verify_self_signature().is_err());
    // a sign-key that is not the device key is rejected at decode
    let content = build_content(
        AssertionType::SerialRequest,
        &h,
        "",
        &TestKey::root().public.key_id(),
    )
    .unwrap();
    let err = decode(&TestKey::root().sign(&content, T2024)).unwrap_err();
    assert!(
        err.to_string()
            .contains("device key does not match included signing key id")
    );
    // authority-id is forbidden
    h.insert("authority-id".into(), "x".into());
    assert!(build_content(AssertionType::SerialRequest, &h, "", "k").is_err());
}

fn count(data: &str) -> (usize, Option<String>) {
    let mut n = 0;
    for r in Decoder::new(data.as_bytes()) {
        match r {
            Ok(_) => n += 1,
            Err(e) => return (n, Some(e.to_string())),
        }
    }
    (n, None)
}

#[test]
fn stream_probe_rows() {
    let a = fixture_str("snapd/testrootorg.account");
    let b = fixture_str("snapd/teststore.account-key");
    let (a, b) = (a.trim_end_matches('\n'), b.trim_end_matches('\n'));
    let first_key_line =
        "AcbBTQRWhcGAARAAmJqmZvsS58INTs+UQ+jfo836vBS5tkU/hk7c0huZe3So2gc9kaJvjkjhZ6g0";
    for sep in ["\n\n", "\n\n\n", "\n", "\r\n\r\n"] {
        for end in ["", "\n", "\n\n", "\n\n\n"] {
            let (n, err) = count(&format!("{a}{sep}{b}{end}"));
            let want: (usize, Option<String>) = match sep {
                "\n\n" if end == "\n\n\n" => (2, Some("unexpected EOF".into())),
                "\n\n" => (2, None),
                "\n\n\n" => (
                    1,
                    Some(
                        "parsing assertion headers: header entry missing ':' separator: \"\""
                            .into(),
                    ),
                ),
                _ => (
                    1,
                    Some(format!(
                        "parsing assertion headers: header entry missing ':' separator: {first_key_line:?}"
                    )),
                ),
            };
            assert_eq!((n, err), want, "sep={sep:?} end={end:?}");
        }
    }
}

#[test]
fn body_probe_rows() {
    let store = TestKey::store();
    for body in ["x\n", "\nx", "a\n\nb", "x\n\n", "\n\n"] {
        let mut h = Headers::new();
        h.insert("brand-id".into(), "b".into());
        h.insert("model".into(), "m".into());
        h.insert("request-id".into(), "r".into());
        h.insert(
            "device-key".into(),
            HeaderValue::String(store.public.encode()),
        );
        let content = build_content(
            AssertionType::SerialRequest,
            &h,
            body,
            &store.public.key_id(),
        )
        .unwrap();
        let enc = store.sign(&content, T2024);
        let single = decode(&enc).unwrap();
        assert_eq!(single.body(), body.as_bytes(), "Decode {body:?}");
        let streamed = Decoder::new(&enc).next().unwrap().unwrap();
        assert_eq!(streamed.body(), body.as_bytes(), "stream {body:?}");
        SerialRequest::try_from(streamed)
            .unwrap()
            .verify_self_signature()
            .unwrap();
    }
}

#[test]
fn stream_limits_and_framing() {
    use serialmint::assertion::{MAX_BODY_SIZE, MAX_HEADERS_SIZE, encode_stream};
    let a = fixture_str("snapd/testrootorg.account");
    let b = fixture_str("snapd/teststore.account-key");
    // encoder framing: exactly one empty line between assertions
    let s = encode_stream([a.as_bytes(), b.as_bytes()]);
    assert_eq!(s, format!("{a}\n{b}").into_bytes());
    assert_eq!(count(std::str::from_utf8(&s).unwrap()), (2, None));
    let s2 = encode_stream([a.trim_end().as_bytes()]);
    assert_eq!(s2, format!("{}\n", a.trim_end()).into_bytes());
    // headers without a delimiter in 128 KiB
    let big = format!("type: account\nx: {}", "a".repeat(MAX_HEADERS_SIZE));
    assert!(count(&big).1.unwrap().contains("maximum size exceeded"));
    // body-length above 2 MiB
    let huge = format!("type: account\nbody-length: {}\n\nx", MAX_BODY_SIZE + 1);
    assert!(
        count(&huge)
            .1
            .unwrap()
            .contains("exceeds maximum body size")
    );
    // truncated body
    let trunc = "type: account\nbody-length: 10\n\nabc";
    assert_eq!(count(trunc).1.as_deref(), Some("unexpected EOF"));
}
